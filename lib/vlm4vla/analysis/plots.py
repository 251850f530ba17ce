"""Figures for the finding notebooks (matplotlib / seaborn), one function per figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from vlm4vla.data.auxiliary import parse_numbers


def success_bars(table: pd.DataFrame, ax: plt.Axes | None = None) -> plt.Axes:
    """Success per backbone with seed intervals, pretrained and from-scratch side by side."""
    ax = ax or plt.subplots(figsize=(8, 3.5))[1]
    frame = table.assign(label=table["backbone"] + " (" + table["init"] + ")").sort_values("success")
    err = np.vstack([frame["success"] - frame["pooled_ci_low"], frame["pooled_ci_high"] - frame["success"]])
    colors = ["#999" if i == "scratch" else "#3a7" for i in frame["init"]]
    ax.barh(frame["label"], frame["success"], xerr=err, color=colors, capsize=3)
    ax.set_xlim(0, 1)
    ax.set_xlabel("mean success (95% Wilson interval over pooled episodes)")
    return ax


def capability_scatter(success: pd.Series, probe: pd.Series, title: str, ax: plt.Axes | None = None,
                       interval: pd.DataFrame | None = None) -> plt.Axes:
    """One panel: probe score (x) vs VLA success (y) per backbone, with a least-squares line.

    ``interval``: optional ``low`` / ``high`` success bounds per backbone, drawn as vertical bars.
    """
    ax = ax or plt.subplots(figsize=(4, 3.5))[1]
    common = success.index.intersection(probe.dropna().index)
    x, y = probe[common].astype(float), success[common].astype(float)
    if interval is not None:
        bounds = interval.reindex(common)
        ax.errorbar(x, y, yerr=np.vstack([y - bounds["low"], bounds["high"] - y]), fmt="none", ecolor="#999",
                    elinewidth=1, capsize=2, zorder=1)
    sns.regplot(x=x.to_numpy(), y=y.to_numpy(), ax=ax, ci=None, scatter_kws={"s": 40, "zorder": 2},
                line_kws={"color": "#c33"})
    for name in common:
        ax.annotate(name, (x[name], y[name]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel=probe.name, ylabel="VLA success", title=title)
    return ax


def seed_points(episodes: pd.DataFrame, x: str, order: list[str], ax: plt.Axes, spread: float = 0.25) -> plt.Axes:
    """Each seed's success (pooled episodes of all its tasks) at category ``x`` as a dot with its 95%
    Wilson interval, seeds side by side around the category's position in ``order`` (over a box plot
    of the same points, this shows how much of the spread the episode budget alone could make)."""
    from vlm4vla.stats import wilson_interval

    pooled = episodes[episodes[x].isin(order)].groupby([x, "seed"], as_index=False)[["successes", "n"]].sum()
    seeds = sorted(pooled["seed"].unique())
    offsets = dict(zip(seeds, np.linspace(-spread / 2, spread / 2, len(seeds)) if len(seeds) > 1 else [0.0]))
    for row in pooled.itertuples():
        rate = row.successes / row.n
        low, high = wilson_interval(int(row.successes), int(row.n))
        ax.errorbar(order.index(getattr(row, x)) + offsets[row.seed], rate, yerr=[[rate - low], [high - rate]],
                    fmt="o", color="#333", markersize=3.5, elinewidth=0.8, capsize=1.5, zorder=3)
    return ax


def short_task(task: str) -> str:
    """A short label: Meta-World ``door-open-v3`` -> ``door-open``; LIBERO
    ``pick_up_the_alphabet_soup_and_place_it_in_the_basket`` -> ``alphabet soup``."""
    task = task.removesuffix("-v3")
    if task.startswith("pick_up_the_") and "_and_place" in task:
        task = task.removeprefix("pick_up_the_").split("_and_place")[0]
    return task.replace("_", " ")


def radar(profile: pd.DataFrame, ax: plt.Axes | None = None) -> plt.Axes:
    """Per-task success of each backbone (rows of ``profile``) on a polar chart, as the paper's teaser."""
    if ax is None:
        ax = plt.subplots(figsize=(6, 6), subplot_kw={"projection": "polar"})[1]
    angles = np.linspace(0, 2 * np.pi, len(profile.columns), endpoint=False)
    closed = np.append(angles, angles[0])
    for name, row in profile.iterrows():
        values = np.append(row.to_numpy(dtype=float), row.iloc[0])
        ax.plot(closed, values, label=name)
        ax.fill(closed, values, alpha=0.08)
    ax.set_xticks(angles, [short_task(c) for c in profile.columns], fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right", bbox_to_anchor=(1.35, 1.1), fontsize=7)
    return ax


def distinct_examples(examples: pd.DataFrame, n: int = 4) -> pd.DataFrame:
    """The first ``n`` example questions of a fine-tune (its examples.csv) that differ in prompt or answer:
    consecutive held-out frames often repeat the same question."""
    return examples.drop_duplicates(["prompt", "answer"]).head(n)


POINT_KINDS = ("pointing", "waypoints")  # auxiliary questions answered with "x y ..." pixel coordinates
POINT_STYLES = ({"marker": "o", "color": "lime", "markerfacecolor": "none", "label": "true answer"},
                {"marker": "+", "color": "#ddd", "label": "before the fine-tune"},
                {"marker": "x", "color": "orange", "label": "after the fine-tune"})


def answer_points(text: str) -> np.ndarray:
    """The (x, y) pixel pairs in an answer, shape (n, 2); an odd trailing number is dropped."""
    numbers = parse_numbers(text)
    return np.array(numbers[:len(numbers) // 2 * 2], dtype=float).reshape(-1, 2)


def auxiliary_examples(frames: np.ndarray, examples: pd.DataFrame, title: str, n: int = 4) -> plt.Figure:
    """Up to ``n`` held-out auxiliary questions of one fine-tune (``examples``: its examples.csv, ``row``
    indexing ``frames``), each image titled with the question kind, the true answer and the answers before
    and after the fine-tune; questions repeating an earlier (prompt, answer) are left out."""
    shown = distinct_examples(examples, n)
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(2.6 * max(len(shown), 1), 3.2), squeeze=False)
    marked = False
    for ax, item in zip(axes[0], shown.itertuples()):
        ax.imshow(frames[int(item.row)])
        ax.set_title(f"{item.kind}: {item.answer}\nbefore: {str(item.before)[:24]}\nafter: {str(item.after)[:24]}",
                     fontsize=7)
        if item.kind in POINT_KINDS:  # pixel answers: drawn where they point
            ax.autoscale(False)  # answers off the image do not rescale it
            for text, style in zip((item.answer, item.before, item.after), POINT_STYLES):
                points = answer_points(str(text))
                if len(points):
                    ax.plot(points[:, 0], points[:, 1], linestyle="none", markersize=7, **style)
                    marked = True
    for ax in axes[0]:
        ax.set_axis_off()
    if marked:
        handles = [plt.Line2D([], [], linestyle="none", **style) for style in POINT_STYLES]
        fig.legend(handles, [s["label"] for s in POINT_STYLES], loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.07 if marked else 0, 1, 0.9))  # room for the suptitle above the three-line titles
    return fig
