"""Figures and tables of the zoo for notebooks (kept here so no notebook defines a function)."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vlm4vla.data.corpus import QUESTION_TYPES, Corpus


def plot_pretraining_curves(histories: dict[str, pd.DataFrame]) -> plt.Figure:
    """Next-token loss against step, one line per pretrained member (scratch members have none)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, history in histories.items():
        if len(history):
            ax.plot(history["step"], history["loss"], label=name)
    ax.set(xlabel="pretraining step", ylabel="next-token loss (targets only)", yscale="log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def vqa_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per backbone: params, steps, recipe, and accuracy [95% CI] overall and per question type."""
    out = table[["name", "family", "params", "steps", "recipe"]].copy()
    for qtype in ("", *QUESTION_TYPES):
        key = f"vqa_{qtype}_" if qtype else "vqa_"
        if f"{key}accuracy" in table:
            out[qtype or "overall"] = [f"{a:.2f} [{lo:.2f}, {hi:.2f}]" for a, lo, hi in
                                       zip(table[f"{key}accuracy"], table[f"{key}ci_low"], table[f"{key}ci_high"])]
    return out.set_index("name")


def plot_vqa_by_type(table: pd.DataFrame) -> plt.Figure:
    """General VQA accuracy with 95% Wilson intervals, per backbone and question type."""
    kinds = ["", *[q for q in QUESTION_TYPES if f"vqa_{q}_accuracy" in table]]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(kinds)
    x = np.arange(len(table))
    for i, qtype in enumerate(kinds):
        key = f"vqa_{qtype}_" if qtype else "vqa_"
        acc = table[f"{key}accuracy"].to_numpy()
        err = np.clip(np.stack([acc - table[f"{key}ci_low"], table[f"{key}ci_high"] - acc]), 0, None)  # round-off
        ax.bar(x + i * width, acc, width, yerr=err, capsize=2, label=qtype or "overall")
    ax.set_xticks(x + 0.4 - width / 2, table["name"], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="general VQA accuracy", ylim=(0, 1))
    ax.legend(fontsize=7, ncols=3)
    fig.tight_layout()
    return fig


def show_answers(corpus: Corpus, answers: dict[str, pd.DataFrame], k: int = 6) -> plt.Figure:
    """The first ``k`` held-out questions with each backbone's answer under the image."""
    first = next(iter(answers.values())).head(k)
    fig, axes = plt.subplots(1, k, figsize=(2.3 * k, 3.2 + 0.25 * len(answers)))
    for j, (ax, row) in enumerate(zip(np.atleast_1d(axes), first.itertuples())):
        ax.imshow(corpus.images[row.image])
        said = "\n".join(f"{n}: {a.iloc[j]['predicted']!r}" for n, a in answers.items())
        ax.set_title(f"{textwrap.fill(row.prompt, 30)}\n(truth: {row.answer})", fontsize=6)
        ax.set_xlabel(said, fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
