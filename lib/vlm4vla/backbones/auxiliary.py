"""Finding 2: fine-tune a base VLM on one auxiliary embodied task before VLA training (STUDY.md, issue 7).

Items come from ``data.auxiliary`` (simulator ground truth). As in stage 1 of finding 4
(``control_supervision``), they become one more ``Corpus`` beside the general corpus's caption / QA
items (kind "qa", qtype "aux_<task>"), mixed at ``vqa_ratio``, and the one pretraining loop
(``backbones.pretrain.pretrain``) trains on the mix unchanged. Stage 2 (the usual VLA training)
loads the saved ``<base>-aux-<task>`` like any zoo member.

Freezing is declarative (``control_supervision.STAGE1_FREEZE``): by default every task trains the
whole VLM except ``vqa_mix``, which the paper trains with the vision tower frozen.

Probes, before and after: the task's own skill on held-out auxiliary items (episodes never trained
on, ``data.auxiliary.split_episodes``), the next-token loss on those items, and general VQA accuracy.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from vlm4vla.backbones.base import Backbone, load_backbone
from vlm4vla.backbones.control_supervision import (STAGE1_FREEZE, _repeat_rows, _resized, finetune_on_mix, item_losses,
                                                   mixed_pretrain_config)
from vlm4vla.backbones.pretrain import RECIPES, PretrainConfig, history_csv
from vlm4vla.data.auxiliary import (MIX_TASK, QTYPE_PREFIX, check_aux_task, make_auxiliary, score_answers,
                                    skill_summary)
from vlm4vla.data.corpus import Corpus
from vlm4vla.data.demos import DemoStore

AUTO_FREEZE = "auto"  # vqa_mix -> freeze_vision (the paper's VQA-Mix), every other task -> none
HISTORY_FILE = "history.csv"
SUMMARY_FILE = "summary.json"
EXAMPLES_FILE = "examples.csv"
MAX_NEW_TOKENS = {"word": 6, "points": 24, "grid": 24}  # "160" / "x1 y1 x2 y2 x3 y3" / "0010 0011 0000 0001" + end
N_EXAMPLES = 8  # held-out items whose answers before / after are kept in examples.csv


@dataclass(frozen=True)
class AuxConfig:
    """One auxiliary fine-tune: the task, optimisation (as ``PretrainConfig``), VQA share and freezing."""

    task: str = "pointing"
    steps: int = 300
    batch_size: int = 16
    lr: float = 3e-4
    vqa_ratio: float = 0.3  # expected share of general items (caption / QA) in the training stream
    freeze: str = AUTO_FREEZE
    seed: int = 0
    n_items: int = 4000  # auxiliary training items drawn from the train episodes of the store
    general_recipe: str = "qa+captions"
    warmup_steps: int = 20
    grad_clip: float = 1.0
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        check_aux_task(self.task)  # unknown names answer with the nearest ones
        if self.freeze != AUTO_FREEZE and self.freeze not in STAGE1_FREEZE:
            raise ValueError(f"AuxConfig.freeze={self.freeze!r} is invalid: allowed {[AUTO_FREEZE, *sorted(STAGE1_FREEZE)]}")
        if not 0 <= self.vqa_ratio < 1:
            raise ValueError(f"AuxConfig.vqa_ratio={self.vqa_ratio!r} is invalid: must lie in [0, 1)")
        if self.n_items < 1:
            raise ValueError(f"AuxConfig.n_items={self.n_items!r} is invalid: must be >= 1")
        if self.general_recipe not in RECIPES:
            raise ValueError(f"AuxConfig.general_recipe={self.general_recipe!r} is invalid: allowed {sorted(RECIPES)}")
        self.pretrain_config()  # steps, batch_size, lr, log_every validated by PretrainConfig

    @property
    def freeze_variant(self) -> str:
        """The STAGE1_FREEZE variant actually applied ('auto' resolved)."""
        if self.freeze != AUTO_FREEZE:
            return self.freeze
        return "freeze_vision" if self.task == MIX_TASK else "none"

    def pretrain_config(self) -> PretrainConfig:
        """The loop's config (the mixed corpus holds every kind, so the recipe takes all)."""
        return mixed_pretrain_config(self)

    def describe(self) -> str:
        return (f"{self.task}: {self.n_items} items, {self.steps} steps x batch {self.batch_size}, lr {self.lr}, "
                f"vqa_ratio {self.vqa_ratio}, freeze {self.freeze_variant}, seed {self.seed}")


def aux_name(base: str, task: str) -> str:
    """The saved backbone's name: '<base>-aux-<task>'."""
    return f"{base}-aux-{task}"


def _frames(store: DemoStore, rows: np.ndarray, size: int) -> np.ndarray:
    """uint8 (len(rows), size, size, 3) frames of ``rows`` (resized to the corpus's image size)."""
    return _resized(np.asarray(store.frames[rows]), size)


def aux_corpus(store: DemoStore, items: pd.DataFrame, size: int | None = None) -> Corpus:
    """Auxiliary items as a Corpus (kind "qa", qtype "aux_<task>"), holding only the frames they use."""
    rows, image = np.unique(items["row"].to_numpy(dtype=int), return_inverse=True)
    images = _frames(store, rows, size or store.frames.shape[1])
    table = items.assign(image=image, kind="qa", qtype=QTYPE_PREFIX + items["aux_task"].astype(str))
    return Corpus(images, table.reset_index(drop=True))


def mixed_aux_corpus(store: DemoStore, items: pd.DataFrame, corpus: Corpus, vqa_ratio: float,
                     general_recipe: str = "qa+captions", seed: int = 0) -> Corpus:
    """Auxiliary and general items in one Corpus whose rows hold a ``vqa_ratio`` share of general items
    (the smaller side repeated whole, then a random remainder; every item kept: as control_supervision)."""
    rng = np.random.default_rng(seed)
    aux = aux_corpus(store, items, corpus.images.shape[1])
    own = aux.items
    general = corpus.items[corpus.items["kind"].isin(RECIPES[general_recipe])].reset_index(drop=True)
    general = general.assign(image=general["image"] + len(aux.images))  # images: frames first, then corpus
    if vqa_ratio == 0:
        general = general.iloc[:0]
    elif len(general) * (1 - vqa_ratio) >= len(own) * vqa_ratio:
        own = _repeat_rows(own, round(len(general) * (1 - vqa_ratio) / vqa_ratio), rng)
    else:
        general = _repeat_rows(general, round(len(own) * vqa_ratio / (1 - vqa_ratio)), rng)
    return Corpus(np.concatenate([aux.images, corpus.images]), pd.concat([own, general], ignore_index=True))


def finetune_auxiliary(backbone: Backbone, store: DemoStore, corpus: Corpus, cfg: AuxConfig,
                       items: pd.DataFrame | None = None) -> list[dict[str, float]]:
    """Fine-tune in place on the task's train-episode items mixed with general VQA, the variant's
    groups frozen. Returns the loop's history (step, loss, lr, seconds)."""
    if items is None:
        items = make_auxiliary(store, cfg.task, cfg.n_items, cfg.seed, split="train")
    mix = mixed_aux_corpus(store, items, corpus, cfg.vqa_ratio, cfg.general_recipe, cfg.seed)
    history, table = finetune_on_mix(backbone, mix, cfg.freeze_variant, cfg.pretrain_config())
    backbone.card.update({"auxiliary_finetuning": cfg.describe(), "auxiliary_items": len(items),
                          "auxiliary_trainable": int(table.loc["total", "trainable"]),
                          "auxiliary_frozen": int(table.loc["total", "frozen"])})
    return history


@torch.no_grad()
def aux_answers(backbone: Backbone, store: DemoStore, items: pd.DataFrame, batch_size: int = 32) -> pd.DataFrame:
    """Greedy answers to ``items`` (grouped by answer type for the token budget), scored (score_answers)."""
    was_training = backbone.model.training
    backbone.model.eval()
    predicted = pd.Series("", index=items.index, dtype=object)
    for answer_type, group in items.groupby("answer_type"):
        for start in range(0, len(group), batch_size):
            rows = group.iloc[start:start + batch_size]
            images = np.asarray(store.frames[rows["row"].to_numpy()])
            predicted.loc[rows.index] = backbone.generate(images, rows["prompt"].tolist(), MAX_NEW_TOKENS[answer_type])
    backbone.model.train(was_training)
    return score_answers(items, predicted.tolist(), store.frames.shape[1])


def aux_skill(backbone: Backbone, store: DemoStore, task: str, items: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
    """(the task's headline skill and the item loss on ``items``, the scored answers)."""
    scored = aux_answers(backbone, store, items)
    loss = item_losses(backbone, aux_corpus(store, items), (QTYPE_PREFIX + task,), n=min(len(items), 64))
    return skill_summary(task, scored) | {"aux_loss": loss}, scored


def probe(backbone: Backbone, store: DemoStore, task: str, items: pd.DataFrame, heldout: Corpus,
          n_probe: int) -> tuple[dict[str, Any], pd.DataFrame]:
    """Own skill (held-out auxiliary items) and general VQA accuracy: (flat dict, scored answers)."""
    from vlm4vla.probes import general_vqa_accuracy  # probes sit above backbones; used only here

    skill, scored = aux_skill(backbone, store, task, items)
    return skill | {"vqa": general_vqa_accuracy(backbone, heldout, n=n_probe)["overall"]["accuracy"]}, scored


def run_auxiliary(base_dir: str | Path, store: DemoStore, train: Corpus, heldout: Corpus, cfg: AuxConfig,
                  out_dir: str | Path, n_probe: int = 200) -> dict[str, Any]:
    """Load a zoo member, probe, fine-tune on ``cfg.task``, probe again and save it under
    out_dir/<base>-aux-<task> (checkpoint + history.csv + summary.json + examples.csv).

    The summary is flat: base, task, skill_metric, skill_before / after (``n_probe`` held-out items of
    the task), aux_loss_before / after, vqa_before / after (``n_probe`` held-out general questions), ...
    """
    base = Path(base_dir)
    backbone = load_backbone(base)
    probe_items = make_auxiliary(store, cfg.task, n_probe, cfg.seed, split="heldout")
    train_items = make_auxiliary(store, cfg.task, cfg.n_items, cfg.seed, split="train")
    before, scored_before = probe(backbone, store, cfg.task, probe_items, heldout, n_probe)
    history = finetune_auxiliary(backbone, store, train, cfg, train_items)
    after, scored_after = probe(backbone, store, cfg.task, probe_items, heldout, n_probe)
    name = aux_name(base.name, cfg.task)
    summary = {"name": name, "base": base.name, "task": cfg.task, "skill_metric": before["skill_metric"],
               "skill_higher_is_better": before["skill_higher_is_better"],
               **{f"{k}_before": before[k] for k in ("skill", "score", "parsed", "aux_loss", "vqa")},
               **{f"{k}_after": after[k] for k in ("skill", "score", "parsed", "aux_loss", "vqa")},
               "n_train_items": len(train_items), "n_probe_items": len(probe_items),
               "trainable": backbone.card["auxiliary_trainable"], "frozen": backbone.card["auxiliary_frozen"],
               "freeze_variant": cfg.freeze_variant, "aux_store": str(store.path),
               **{k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("task", "progress")}}
    backbone.card.update({"name": name, "base": base.name,
                          "general_vqa": f"{after['vqa']:.3f} on {n_probe} held-out questions (before: {before['vqa']:.3f})",
                          "auxiliary_skill": f"{before['skill_metric']} {before['skill']:.3f} -> {after['skill']:.3f}"})
    extra = {SUMMARY_FILE: json.dumps(summary, indent=2, default=str) + "\n",
             HISTORY_FILE: history_csv(history),
             EXAMPLES_FILE: examples(scored_before, scored_after).to_csv(index=False)}
    backbone.save(Path(out_dir) / name, extra_files=extra)
    return summary


def examples(before: pd.DataFrame, after: pd.DataFrame, n: int = N_EXAMPLES) -> pd.DataFrame:
    """The first ``n`` probe items per kind with their answers before and after (and scores)."""
    keep = before.groupby("kind", sort=False).head(max(1, n // max(1, before["kind"].nunique()))).index[:n]
    cols = ["row", "task", "aux_task", "kind", "prompt", "answer"]
    return before.loc[keep, cols].assign(before=before.loc[keep, "predicted"], score_before=before.loc[keep, "score"],
                                         after=after.loc[keep, "predicted"], score_after=after.loc[keep, "score"])


def auxiliary_table(out_dir: str | Path, names: list[str] | None = None) -> pd.DataFrame:
    """One row per fine-tune (its summary.json), in ``names`` order when given."""
    out_dir = Path(out_dir)
    names = names or sorted(p.name for p in out_dir.iterdir() if (p / SUMMARY_FILE).is_file())
    return pd.DataFrame([json.loads((out_dir / n / SUMMARY_FILE).read_text()) for n in names])


def auxiliary_examples(out_dir: str | Path, names: list[str]) -> dict[str, pd.DataFrame]:
    """Each fine-tune's example answers before / after."""
    return {n: pd.read_csv(Path(out_dir) / n / EXAMPLES_FILE, keep_default_na=False) for n in names}
