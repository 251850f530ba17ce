"""Capability probes: what a VLM can do, measured apart from any robot policy.

General VQA: greedy answers to held-out corpus questions, exact match (answers are one word or a
digit), overall and per question type with 95% Wilson intervals. This is the study's "general
capability" axis (the paper's general VQA benchmark scores).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from vlm4vla.backbones.base import Backbone
from vlm4vla.data.corpus import Corpus
from vlm4vla.stats import wilson_interval

VQA_MAX_NEW_TOKENS = 4  # answers are one word or digit: at most a few BPE tokens + end token


def normalise_answer(text: str) -> str:
    """Lower-case, strip spaces and a final full stop (exact match after this)."""
    return text.strip().lower().rstrip(".").strip()


def vqa_answers(backbone: Backbone, corpus: Corpus, n: int = 200, batch_size: int = 32, seed: int = 0) -> pd.DataFrame:
    """Greedy answers to ``n`` held-out questions (a seeded sample): one row per question."""
    qa = corpus.items[corpus.items["kind"] == "qa"]
    qa = qa.sample(n=min(n, len(qa)), random_state=seed).reset_index(drop=True)
    predicted: list[str] = []
    for start in range(0, len(qa), batch_size):
        rows = qa.iloc[start:start + batch_size]
        images = corpus.images[rows["image"].to_numpy()]
        predicted += backbone.generate(images, rows["prompt"].tolist(), max_new_tokens=VQA_MAX_NEW_TOKENS)
    qa["predicted"] = predicted
    qa["correct"] = [normalise_answer(p) == normalise_answer(a) for p, a in zip(predicted, qa["answer"])]
    return qa


def accuracy_summary(correct: pd.Series | np.ndarray) -> dict[str, float]:
    """Accuracy, its 95% Wilson interval and n."""
    k, n = int(np.sum(correct)), int(len(correct))
    lo, hi = wilson_interval(k, n) if n else (float("nan"), float("nan"))
    return {"accuracy": k / n if n else float("nan"), "ci_low": lo, "ci_high": hi, "n": n}


@torch.no_grad()
def general_vqa_accuracy(backbone: Backbone, corpus_heldout: Corpus, n: int = 200, seed: int = 0) -> dict:
    """General VQA exact-match accuracy: ``{"overall": {...}, "by_type": {qtype: {...}}, "answers": df}``.

    Each summary holds accuracy, ci_low, ci_high (95% Wilson) and n.
    """
    answers = vqa_answers(backbone, corpus_heldout, n=n, seed=seed)
    by_type = {q: accuracy_summary(g["correct"]) for q, g in answers.groupby("qtype")}
    return {"overall": accuracy_summary(answers["correct"]), "by_type": by_type, "answers": answers}
