"""Embodied probes: zero-shot questions about robot frames, scored against simulator ground truth.

The questions (``vlm4vla.data.embodied_qa``) are asked in the general corpus's QA style. A VLM
pretrained only on the general corpus has never seen a robot frame nor a pointing question, so each
result carries its chance level. Two-option questions (depth order, relation, gripper) are scored
by ranking: the answer is the option the model gives the higher log-likelihood (summed over the
option's tokens and end token), as multiple-choice benchmarks score zero-shot models. Free
generation almost never produces either option in a model that was not trained on the question
(0% for every zoo backbone at default scale, 2026-11-24), which measures the answer format rather
than the skill; its exact-match accuracy is kept as ``generated``. Pointing is answered by greedy
generation. Every probe returns ``{"score", "ci_low", "ci_high", "n", "chance", "parsed",
"answers"}`` (``answers``: one row per item with the prediction), deterministic given the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from vlm4vla.backbones.base import IGNORE_INDEX, Backbone
from vlm4vla.data.demos import DemoStore
from vlm4vla.data.embodied_qa import EmbodiedQAConfig, make_embodied_qa, parse_point, segmentation_class
from vlm4vla.probes.general import normalise_answer
from vlm4vla.stats import mean_interval, wilson_interval

POINT_MAX_NEW_TOKENS = 8  # "43 35" plus end token: digits may split into several BPE tokens
WORD_MAX_NEW_TOKENS = 4  # one-word answers, as the general VQA probe
CHANCE_SAMPLES = 256  # uniform random points per item for the pointing chance level


@dataclass(frozen=True)
class EmbodiedProbeConfig:
    """Which items (``qa``), how they are batched, and the seed of the chance estimates."""

    qa: EmbodiedQAConfig = field(default_factory=EmbodiedQAConfig)
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"EmbodiedProbeConfig.batch_size={self.batch_size!r} is invalid: must be >= 1")


@torch.no_grad()
def ask(backbone: Backbone, store: DemoStore, items: pd.DataFrame, max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy answers of ``backbone`` to ``items`` (their frames from ``store``)."""
    out: list[str] = []
    for start in range(0, len(items), batch_size):
        rows = items.iloc[start:start + batch_size]
        images = np.asarray(store.frames[rows["row"].to_numpy()])  # (B, H, W, 3), a copy of the memmap rows
        out += backbone.generate(images, rows["prompt"].tolist(), max_new_tokens=max_new_tokens)
    return out


@torch.no_grad()
def option_logprobs(backbone: Backbone, images: np.ndarray, prompts: list[str], options: list[list[str]]) -> np.ndarray:
    """(B, n_options) log-likelihood of each row's options as the answer: the sum over the answer's
    tokens (with the family's end token) of log p(token | image, prompt, earlier tokens).

    Only the answer positions go through the LM head, so a 150k-token vocabulary costs
    (answer tokens x vocabulary), not (sequence x vocabulary).
    """
    n_options = {len(o) for o in options}
    if len(n_options) != 1:
        raise ValueError(f"every row needs the same number of options, got {sorted(n_options)}")
    out = np.empty((len(prompts), n_options.pop()))
    for j in range(out.shape[1]):
        inputs = backbone.encode(images, prompts, [o[j] for o in options])
        hidden = backbone.last_hidden_state(inputs)[:, :-1]  # (B, T-1, D): position t predicts token t+1
        labels = inputs["labels"][:, 1:]
        keep = labels != IGNORE_INDEX  # (B, T-1) answer tokens
        logp = F.log_softmax(backbone.logits(hidden[keep]).float(), -1)  # (N, V)
        token = logp.gather(1, labels[keep][:, None])[:, 0]  # (N,)
        row = keep.nonzero()[:, 0]  # (N,) the batch row of each answer token
        out[:, j] = torch.zeros(len(prompts)).index_add_(0, row.cpu(), token.cpu()).numpy()
    return out


def choose(backbone: Backbone, store: DemoStore, items: pd.DataFrame, batch_size: int) -> list[str]:
    """For each item, the option of ``items["options"]`` ("a|b") with the higher log-likelihood."""
    out: list[str] = []
    for start in range(0, len(items), batch_size):
        rows = items.iloc[start:start + batch_size]
        options = [o.split("|") for o in rows["options"]]
        images = np.asarray(store.frames[rows["row"].to_numpy()])
        scores = option_logprobs(backbone, images, rows["prompt"].tolist(), options)
        out += [o[i] for o, i in zip(options, scores.argmax(1))]
    return out


def _empty(chance: float) -> dict:
    return {"score": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0, "chance": chance,
            "parsed": float("nan"), "answers": pd.DataFrame()}


def qa_accuracy(backbone: Backbone, store: DemoStore, kind: str, cfg: EmbodiedProbeConfig = EmbodiedProbeConfig()) -> dict:
    """Accuracy of the ranked choice between a kind's two options, with a 95% Wilson interval.

    ``chance`` is the majority-answer rate per question type (0.5 when balanced). ``generated`` is the
    exact-match accuracy of the greedy free answer and ``parsed`` the share of free answers that are
    one of the two options (see the module docstring).
    """
    items = make_embodied_qa(store, kind, cfg.qa)
    if items.empty:
        return _empty(float("nan"))
    items["predicted"] = choose(backbone, store, items, cfg.batch_size)
    items["generated"] = ask(backbone, store, items, WORD_MAX_NEW_TOKENS, cfg.batch_size)
    items["correct"] = items["predicted"] == items["answer"]
    free = [normalise_answer(p) for p in items["generated"]]
    k, n = int(items["correct"].sum()), len(items)
    lo, hi = wilson_interval(k, n)
    return {"score": k / n, "ci_low": lo, "ci_high": hi, "n": n,
            "chance": _majority_rate(items),
            "generated": float(np.mean([f == a for f, a in zip(free, items["answer"])])),
            "parsed": float(np.mean([f in o.split("|") for f, o in zip(free, items["options"])])),
            "answers": items}


def _majority_rate(items: pd.DataFrame) -> float:
    """Accuracy of always giving each question type's most common answer (0.5 when balanced)."""
    return float(items.groupby("options")["answer"].agg(lambda a: a.value_counts().max()).sum() / len(items))


def depth_order_accuracy(backbone: Backbone, store: DemoStore, cfg: EmbodiedProbeConfig = EmbodiedProbeConfig()) -> dict:
    """Which of two named things is closer to the camera (truth: the depth image)."""
    return qa_accuracy(backbone, store, "depth_order", cfg)


def relation_accuracy(backbone: Backbone, store: DemoStore, cfg: EmbodiedProbeConfig = EmbodiedProbeConfig()) -> dict:
    """Left/right and above/below between the gripper and the task object (truth: projected points)."""
    return qa_accuracy(backbone, store, "relation", cfg)


def gripper_state_accuracy(backbone: Backbone, store: DemoStore, cfg: EmbodiedProbeConfig = EmbodiedProbeConfig()) -> dict:
    """Open or closed (truth: the simulator's gripper opening)."""
    return qa_accuracy(backbone, store, "gripper", cfg)


def pointing_error(backbone: Backbone, store: DemoStore, cfg: EmbodiedProbeConfig = EmbodiedProbeConfig()) -> dict:
    """Mean pixel distance between the answered point and the named thing's projection (95% t-interval).

    An unparseable answer scores the expected error of a uniformly random point for that item (so a
    model that never answers two numbers sits exactly at ``chance``) and counts as a miss;
    ``parsed`` says how often the model answered two numbers. ``chance``: expected error of a
    uniformly random point; ``centre``: error of always answering the image centre. ``hit_rate``:
    answers landing on the thing's segmentation pixels, ``hit_chance`` the share of the image
    those pixels cover (mean over items).
    """
    items = make_embodied_qa(store, "pointing", cfg.qa)
    if items.empty:
        return _empty(float("nan"))
    size = np.array(store.frames.shape[2:0:-1], dtype=float)  # (W, H)
    items["predicted"] = ask(backbone, store, items, POINT_MAX_NEW_TOKENS, cfg.batch_size)
    points = [parse_point(p) for p in items["predicted"]]
    parsed = np.array([p is not None for p in points])
    guess = np.array([p if p is not None else (np.nan, np.nan) for p in points], dtype=float)  # (n, 2)
    truth = items[["x", "y"]].to_numpy()
    random_error = _random_point_error(truth, size, cfg.seed)  # (n,)
    items["error_px"] = np.where(parsed, np.linalg.norm(guess - truth, axis=1), random_error)
    items["hit"] = parsed & _hits(store, items, np.nan_to_num(guess, nan=-1.0))
    mean, lo, hi = mean_interval(items["error_px"].to_numpy())
    return {"score": mean, "ci_low": lo, "ci_high": hi, "n": len(items), "chance": float(random_error.mean()),
            "centre": float(np.linalg.norm(truth - size / 2, axis=1).mean()),
            "hit_rate": float(items["hit"].mean()), "hit_chance": _class_share(store, items),
            "parsed": float(parsed.mean()), "answers": items}


def _random_point_error(truth: np.ndarray, size: np.ndarray, seed: int) -> np.ndarray:
    """(n,) expected distance from each true point to a uniformly random point of the image."""
    rng = np.random.default_rng(seed)
    guesses = rng.uniform(0, 1, (CHANCE_SAMPLES, 1, 2)) * size  # (S, 1, 2)
    return np.linalg.norm(guesses - truth[None], axis=2).mean(0)


def _target_class(items: pd.DataFrame) -> np.ndarray:
    return np.array([segmentation_class(t) for t in items["target"]])


def _hits(store: DemoStore, items: pd.DataFrame, guess: np.ndarray) -> np.ndarray:
    """Whether each guessed pixel lies on the named thing's segmentation (outside the image: no)."""
    h, w = store.segmentation.shape[1:]
    col, row = np.floor(guess[:, 0]).astype(int), np.floor(guess[:, 1]).astype(int)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    cls = _target_class(items)
    return np.array([bool(ok) and store.segmentation[r, y, x] == c
                     for ok, r, y, x, c in zip(inside, items["row"], row.clip(0, h - 1), col.clip(0, w - 1), cls)])


def _class_share(store: DemoStore, items: pd.DataFrame) -> float:
    cls = _target_class(items)
    return float(np.mean([(store.segmentation[r] == c).mean() for r, c in zip(items["row"], cls)]))


EMBODIED_PROBES = {"pointing_error_px": pointing_error, "depth_order_acc": depth_order_accuracy,
                   "relation_acc": relation_accuracy, "gripper_acc": gripper_state_accuracy}


def embodied_probes(backbone: Backbone, store: DemoStore, cfg: EmbodiedProbeConfig = EmbodiedProbeConfig()) -> dict[str, dict]:
    """Every embodied probe: summary key (``pointing_error_px``, ...) -> result dict."""
    return {name: probe(backbone, store, cfg) for name, probe in EMBODIED_PROBES.items()}
