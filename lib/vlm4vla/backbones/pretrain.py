"""Pretraining a backbone on the general corpus: next-token loss on captions / answers, prompt masked.

One pure step (``pretrain_step``) and a thin loop around it. Recipes pick which items the batches
draw from, so that budgets and recipes spread the zoo's general VQA accuracy widely:
``captions`` (image description only: knows the words, never saw a question), ``captions+few-qa``,
``qa`` and ``qa+captions``.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from vlm4vla.backbones.base import Backbone
from vlm4vla.data.corpus import Corpus

RECIPES = {"captions": ("caption",), "qa": ("qa",), "qa+captions": ("caption", "qa"), "captions+few-qa": ("caption", "qa")}
# Kinds a recipe uses only in part (a seeded subsample): "captions+few-qa" sees every caption but 1 question
# in 10: a member that has seen the answer format but had little question practice (the zoo's low end).
RECIPE_FRACTIONS = {"captions+few-qa": {"qa": 0.1}}
CURRICULUM_OBJECTS = 1  # scenes drawn during the curriculum steps hold at most this many objects


@dataclass(frozen=True)
class PretrainConfig:
    """AdamW pretraining: steps, batch, constant lr after a linear warm-up, grad-clip, recipe."""

    steps: int = 500
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    recipe: str = "qa+captions"
    # First steps draw only scenes of <= CURRICULUM_OBJECTS objects: from scratch, a model first learns the
    # answer priors and ignores the image (loss equal with images shuffled across the batch, measured to
    # 400 steps on 1-4-object scenes); on single-object scenes a tiny model starts to use the image by
    # step 150 (held-out loss 0.43 vs 0.48 shuffled, 0.31 vs 0.55 at 300).
    curriculum_steps: int = 0
    seed: int = 0
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            near = difflib.get_close_matches(self.recipe, RECIPES, n=3, cutoff=0.0)
            raise ValueError(f"PretrainConfig.recipe={self.recipe!r} is invalid: allowed {sorted(RECIPES)}; nearest: {near}")
        if self.curriculum_steps < 0:
            raise ValueError(f"PretrainConfig.curriculum_steps={self.curriculum_steps!r} is invalid: must be >= 0")
        for name in ("steps", "batch_size", "log_every"):
            if getattr(self, name) < 1 and not (name == "steps" and self.steps == 0):
                raise ValueError(f"PretrainConfig.{name}={getattr(self, name)!r} is invalid: must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"PretrainConfig.lr={self.lr!r} is invalid: must be > 0")


def recipe_items(corpus: Corpus, recipe: str) -> pd.DataFrame:
    """The rows of ``corpus.items`` a recipe trains on (a seeded subsample where its fraction is < 1)."""
    fractions = RECIPE_FRACTIONS.get(recipe, {})
    parts = [corpus.items[corpus.items["kind"] == kind] for kind in RECIPES[recipe]]
    parts = [p.sample(frac=fractions[kind], random_state=0) if kind in fractions else p for kind, p in zip(RECIPES[recipe], parts)]
    return pd.concat(parts).sort_index().reset_index(drop=True)


def sample_batch(corpus: Corpus, items: pd.DataFrame, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, list[str], list[str]]:
    """Images (B, H, W, 3), prompts and targets of ``batch_size`` random items."""
    rows = items.iloc[rng.integers(len(items), size=batch_size)]
    return corpus.images[rows["image"].to_numpy()], rows["prompt"].tolist(), rows["answer"].tolist()


def pretrain_step(backbone: Backbone, optimizer: torch.optim.Optimizer, batch: tuple, grad_clip: float) -> float:
    """One AdamW step on the next-token loss of the batch's targets; returns the loss."""
    images, prompts, targets = batch
    loss = backbone.lm_loss(backbone.encode(images, prompts, targets))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(backbone.model.parameters(), grad_clip)
    optimizer.step()
    return float(loss.detach())


SAVED_HISTORY_COLUMNS = ["step", "loss", "lr"]


def history_csv(history: list[dict[str, float]]) -> str:
    """A training history as saved in a checkpoint folder: step, loss, lr, without the wall-clock column.
    Every policy run depends (in DVC) on its backbone's folder, so a rebuild from the same seed must
    give the same bytes; the weights do (two builds on one machine: equal safetensors), the timings not."""
    return pd.DataFrame(history, columns=SAVED_HISTORY_COLUMNS).to_csv(index=False)


def pretrain(backbone: Backbone, corpus: Corpus, cfg: PretrainConfig) -> list[dict[str, float]]:
    """Pretrain ``backbone`` in place; returns the history (step, loss, lr, seconds) every log_every steps."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    items = recipe_items(corpus, cfg.recipe)
    easy = items[items["n_objects"] <= CURRICULUM_OBJECTS] if "n_objects" in items else items  # older corpora: no curriculum
    optimizer = torch.optim.AdamW(backbone.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    backbone.model.train()
    history, start, losses = [], time.perf_counter(), []
    for step in tqdm(range(1, cfg.steps + 1), desc=f"pretrain {backbone.family}", disable=not cfg.progress):
        pool = easy if step <= cfg.curriculum_steps and len(easy) else items
        losses.append(pretrain_step(backbone, optimizer, sample_batch(corpus, pool, rng, cfg.batch_size), cfg.grad_clip))
        schedule.step()
        if step % cfg.log_every == 0 or step == cfg.steps:
            history.append({"step": step, "loss": float(np.mean(losses)), "lr": schedule.get_last_lr()[0],
                            "seconds": time.perf_counter() - start})
            losses = []
    backbone.model.eval()
    backbone.card.update({"pretraining": f"{cfg.steps} steps x batch {cfg.batch_size}, recipe {cfg.recipe}, "
                                         f"lr {cfg.lr}, {cfg.curriculum_steps} single-object curriculum steps, seed {cfg.seed}",
                          "init": "random, then pretrained on the general corpus" if cfg.steps else "random (from scratch)"})
    return history
