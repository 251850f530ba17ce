"""Stage 1 of finding 4: control-relevant supervision of the VLM (STUDY.md, finding 4).

The VLM is fine-tuned on next-token prediction of robot actions written as FAST tokens
(``vlm4vla.data.fast``), mixed with general VQA so it keeps its general skill; stage 2 is the usual
VLA training, which loads the saved backbone like any zoo member.

Items: a demonstration frame's image, the paper's prompt ``action_prompt(instruction)`` and, as
target, the FAST spelling of the next N actions (N = 4, the adapter's chunk). They become one more
``Corpus`` (items with kind "qa", qtype "control") beside the general corpus's caption / QA items,
so the one pretraining loop (``backbones.pretrain.pretrain``) trains on the mix unchanged.

FAST tokens enter the VLM vocabulary as new special tokens ``<fast_i>`` (``add_fast_tokens``), one
VLM token per FAST token, as pi0-FAST maps each FAST token to one vocabulary entry (it overwrites
PaliGemma's rarest tokens; we add instead, because our small BPE vocabularies have no unused tail).
Spelling the integers as text would cost several VLM tokens per coefficient and undo FAST's
compression, and would share embeddings with the digits the VQA answers use.

Freezing is declarative (``adapter.freezing``): ``none`` trains everything, ``freeze_vision`` only
the vision encoder is frozen. Unlike the adapter presets the LM head trains: it predicts the tokens.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from vlm4vla.adapter.freezing import FreezeSpec, apply_freezing
from vlm4vla.backbones.base import Backbone, action_prompt, load_backbone
from vlm4vla.backbones.pretrain import RECIPES, PretrainConfig, history_csv, pretrain
from vlm4vla.data.chunks import DemoStoreLike
from vlm4vla.data.corpus import Corpus
from vlm4vla.data.fast import FastConfig, FastTokenizer, action_chunks, round_trip_errors

CONTROL_QTYPE = "control"  # qtype of the action items in the mixed corpus (their kind is "qa")
# Stage-1 freezing variants -> frozen groups (STUDY.md finding 4: "stage 1 with vision frozen / trained").
STAGE1_FREEZE: dict[str, FreezeSpec] = {"none": FreezeSpec((), "none"),
                                        "freeze_vision": FreezeSpec(("vision",), "freeze_vision")}
HISTORY_FILE = "history.csv"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class ControlConfig:
    """Stage-1 fine-tuning: optimisation (as ``PretrainConfig``), the VQA share and the freezing."""

    steps: int = 600
    batch_size: int = 16
    lr: float = 3e-4
    vqa_ratio: float = 0.5  # expected share of general items (caption / QA) in the training stream
    freeze: str = "freeze_vision"
    seed: int = 0
    general_recipe: str = "qa+captions"  # which general items keep the general skill (the zoo's recipe)
    warmup_steps: int = 20
    grad_clip: float = 1.0
    log_every: int = 10
    progress: bool = True
    fast: FastConfig = field(default_factory=FastConfig)

    def __post_init__(self) -> None:
        if self.freeze not in STAGE1_FREEZE:
            raise ValueError(f"ControlConfig.freeze={self.freeze!r} is invalid: allowed {sorted(STAGE1_FREEZE)}")
        if not 0 <= self.vqa_ratio < 1:
            raise ValueError(f"ControlConfig.vqa_ratio={self.vqa_ratio!r} is invalid: must lie in [0, 1)")
        if self.general_recipe not in RECIPES:
            raise ValueError(f"ControlConfig.general_recipe={self.general_recipe!r} is invalid: allowed {sorted(RECIPES)}")
        self.pretrain_config()  # steps, batch_size, lr, log_every validated by PretrainConfig

    def pretrain_config(self) -> PretrainConfig:
        """The loop's config (the mixed corpus holds every kind, so the recipe takes all)."""
        return mixed_pretrain_config(self)

    def describe(self) -> str:
        return (f"{self.steps} steps x batch {self.batch_size}, lr {self.lr}, vqa_ratio {self.vqa_ratio}, "
                f"freeze {self.freeze}, seed {self.seed}, FAST chunk {self.fast.chunk_size} scale {self.fast.scale}")


def mixed_pretrain_config(cfg: Any) -> PretrainConfig:
    """``pretrain()``'s config for a stage-1 fine-tune on a mixed corpus (any config with the loop's fields)."""
    return PretrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                          grad_clip=cfg.grad_clip, recipe="qa+captions", seed=cfg.seed,
                          log_every=cfg.log_every, progress=cfg.progress)


def fit_fast(store: DemoStoreLike, cfg: FastConfig) -> FastTokenizer:
    """FAST fitted on every chunk of the store (the stage-1 training chunks)."""
    return FastTokenizer.fit(action_chunks(store, cfg.chunk_size), cfg)


def fast_round_trip(fast: FastTokenizer, store: DemoStoreLike, n_random: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Round-trip errors on the store's chunks and on uniform random chunks (one row each)."""
    cfg = fast.cfg
    rng = np.random.default_rng(seed)
    random = rng.uniform(-cfg.action_bound, cfg.action_bound, (n_random, cfg.chunk_size, cfg.action_dim))
    rows = {"demonstrations": round_trip_errors(fast, action_chunks(store, cfg.chunk_size)),
            "uniform random": round_trip_errors(fast, random)}
    return pd.DataFrame.from_dict(rows, orient="index")


def add_fast_tokens(backbone: Backbone, fast: FastTokenizer) -> list[int]:
    """Add '<fast_i>' for every FAST id to the backbone's vocabulary (idempotent); their VLM ids.

    transformers draws the new embedding rows from torch's global generator, whose state differs between
    processes, so they are drawn under a fixed seed (the caller's random state is left as it was). Here and
    not in ``Backbone.add_special_token``: the adapter's ActionQuery row never enters a computation (its
    forward hook puts the learnable query there), and base.py is a dependency of every trained policy."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return [backbone.add_special_token(token) for token in fast.special_tokens()]


def control_items(store: DemoStoreLike, fast: FastTokenizer) -> pd.DataFrame:
    """One item per frame: image = frame row, prompt = action_prompt(instruction), answer = FAST text."""
    chunks = action_chunks(store, fast.cfg.chunk_size)  # (F, N, A)
    return pd.DataFrame({"image": np.arange(len(chunks)), "kind": "qa", "qtype": CONTROL_QTYPE,
                         "prompt": [action_prompt(i) for i in store.table["instruction"]],
                         "answer": [fast.encode_text(c) for c in chunks]})


def mixed_corpus(store: DemoStoreLike, corpus: Corpus, fast: FastTokenizer, vqa_ratio: float,
                 general_recipe: str = "qa+captions", seed: int = 0) -> Corpus:
    """Control items and general items in one Corpus whose rows hold a ``vqa_ratio`` share of
    general items (the smaller side repeated whole, then a random remainder; every item is kept)."""
    rng = np.random.default_rng(seed)
    control = control_items(store, fast)
    general = corpus.items[corpus.items["kind"].isin(RECIPES[general_recipe])].reset_index(drop=True)
    general = general.assign(image=general["image"] + len(control))  # images: frames first, then corpus
    if vqa_ratio == 0:
        general = general.iloc[:0]
    elif len(general) * (1 - vqa_ratio) >= len(control) * vqa_ratio:
        control = _repeat_rows(control, round(len(general) * (1 - vqa_ratio) / vqa_ratio), rng)
    else:
        general = _repeat_rows(general, round(len(control) * vqa_ratio / (1 - vqa_ratio)), rng)
    images = np.concatenate([_resized(store.frames, corpus.images.shape[1]), corpus.images])
    return Corpus(images, pd.concat([control, general], ignore_index=True))


def _repeat_rows(rows: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` rows: whole copies of ``rows`` then a random subset for the remainder."""
    reps, rest = divmod(max(n, len(rows)), len(rows))
    extra = rng.choice(len(rows), size=rest, replace=False)
    return pd.concat([rows] * reps + [rows.iloc[extra]], ignore_index=True)


def _resized(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (F, H, W, 3) at size x size (a copy; unchanged if already that size)."""
    if frames.shape[1:3] == (size, size):
        return np.asarray(frames)
    return np.stack([np.asarray(Image.fromarray(np.asarray(f)).resize((size, size), Image.BILINEAR)) for f in frames])


def freeze_for_stage1(backbone: Backbone, freeze: str) -> pd.DataFrame:
    """Set requires_grad by the stage-1 variant; the frozen / trainable table per module group."""
    if freeze not in STAGE1_FREEZE:
        raise ValueError(f"freeze={freeze!r} is invalid: allowed {sorted(STAGE1_FREEZE)}")
    return apply_freezing(torch.nn.ModuleDict({"backbone": backbone}), STAGE1_FREEZE[freeze])


def finetune_control(backbone: Backbone, store: DemoStoreLike, corpus: Corpus, cfg: ControlConfig,
                     fast: FastTokenizer | None = None) -> list[dict[str, float]]:
    """Stage 1 in place: FAST tokens added, variant's groups frozen, the pretraining loop run on the
    control + general mix. Returns the loop's history (step, loss, lr, seconds)."""
    fast = fast or fit_fast(store, cfg.fast)
    add_fast_tokens(backbone, fast)
    mix = mixed_corpus(store, corpus, fast, cfg.vqa_ratio, cfg.general_recipe, cfg.seed)
    history, table = finetune_on_mix(backbone, mix, cfg.freeze, cfg.pretrain_config())
    backbone.card.update({"control_supervision": cfg.describe(),
                          "control_trainable": int(table.loc["total", "trainable"]),
                          "control_frozen": int(table.loc["total", "frozen"])})
    return history


def finetune_on_mix(backbone: Backbone, mix: Corpus, freeze: str,
                    pretrain_cfg: PretrainConfig) -> tuple[list[dict[str, float]], pd.DataFrame]:
    """The shared stage-1 step: freeze a STAGE1_FREEZE variant, run ``pretrain()`` on ``mix``, make every
    parameter trainable again and keep the model card as it was (pretrain writes its own keys).
    Returns the loop's history and the frozen / trainable table."""
    table = freeze_for_stage1(backbone, freeze)
    card = dict(backbone.card)
    try:
        history = pretrain(backbone, mix, pretrain_cfg)
    finally:
        for p in backbone.model.parameters():
            p.requires_grad_(True)
    backbone.card = card
    return history, table


@torch.no_grad()
def item_losses(backbone: Backbone, corpus: Corpus, qtypes: tuple[str, ...], n: int = 64,
                batch_size: int = 16, seed: int = 0) -> float:
    """Mean next-token loss on a fixed sample of ``n`` items whose qtype is in ``qtypes``."""
    items = corpus.items[corpus.items["qtype"].isin(qtypes)]
    items = items.sample(n=min(n, len(items)), random_state=seed)
    was_training = backbone.model.training
    backbone.model.eval()
    losses = []
    for start in range(0, len(items), batch_size):
        rows = items.iloc[start:start + batch_size]
        inputs = backbone.encode(corpus.images[rows["image"].to_numpy()], rows["prompt"].tolist(), rows["answer"].tolist())
        losses.append(float(backbone.lm_loss(inputs)) * len(rows))
    backbone.model.train(was_training)
    return sum(losses) / len(items)


def control_name(base: str, freeze: str) -> str:
    """The saved backbone's name: '<base>-fast-<variant>'."""
    return f"{base}-fast-{freeze}"


def stage1_histories(out_dir: str | Path, names: list[str]) -> dict[str, pd.DataFrame]:
    """Each stage-1 backbone's training history (step, loss, lr, seconds)."""
    return {n: pd.read_csv(Path(out_dir) / n / HISTORY_FILE) for n in names}


def run_stage1(base_dir: str | Path, store: DemoStoreLike, train: Corpus, heldout: Corpus, cfg: ControlConfig,
               fast: FastTokenizer, out_dir: str | Path, n_probe: int = 200) -> dict[str, Any]:
    """Load a zoo member, add the FAST tokens, probe, fine-tune (stage 1), probe again and save it
    under out_dir/<base>-fast-<variant> (checkpoint + FAST files + history.csv + summary.json).

    Probes: general VQA accuracy (held-out), loss on held-out general items, loss on control items
    (training frames: stage 1 has no held-out demonstrations; the loss shows fit, not transfer).
    """
    base = Path(base_dir)
    backbone = load_backbone(base)
    add_fast_tokens(backbone, fast)  # before the first probe, so both probes score the same targets
    control = Corpus(store.frames, control_items(store, fast))
    before = stage1_probe(backbone, control, heldout, n_probe)
    history = finetune_control(backbone, store, train, cfg, fast)
    after = stage1_probe(backbone, control, heldout, n_probe)
    name = control_name(base.name, cfg.freeze)
    summary = {"name": name, "base": base.name, **dataclasses.asdict(cfg),
               **{f"{k}_before": v for k, v in before.items()}, **{f"{k}_after": v for k, v in after.items()}}
    summary["fast"] = dataclasses.asdict(cfg.fast) | {"learnt_vocab_size": fast.vocab_size}
    summary |= {"trainable": backbone.card["control_trainable"], "frozen": backbone.card["control_frozen"]}
    backbone.card.update({"name": name, "base": base.name,
                          "general_vqa": f"{after['vqa_accuracy']:.3f} on {n_probe} held-out questions "
                                         f"(before stage 1: {before['vqa_accuracy']:.3f})"})
    extra = {**fast.files(), SUMMARY_FILE: json.dumps(summary, indent=2, default=str) + "\n",
             HISTORY_FILE: history_csv(history)}
    backbone.save(Path(out_dir) / name, extra_files=extra)
    return summary


def stage1_probe(backbone: Backbone, control: Corpus, heldout: Corpus, n: int = 200) -> dict[str, float]:
    """General VQA accuracy, loss on held-out general items and loss on control items."""
    from vlm4vla.probes import general_vqa_accuracy  # probes sit above backbones; used only here

    general = tuple(heldout.items["qtype"].unique())
    return {"vqa_accuracy": general_vqa_accuracy(backbone, heldout, n=n)["overall"]["accuracy"],
            "general_loss": item_losses(backbone, heldout, general, n=min(n, 64)),
            "control_loss": item_losses(backbone, control, (CONTROL_QTYPE,), n=min(n, 64))}
