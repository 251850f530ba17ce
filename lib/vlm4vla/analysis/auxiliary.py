"""Finding 2: do auxiliary embodied tasks help? VLA success after an auxiliary fine-tune vs its base.

Runs: ``bb-<base>-pretrained-s<seed>`` (the base) and ``ax-<base>-<task>-s<seed>`` (VLA training on
``artifacts/auxiliary-vlms/<base>-aux-<task>``). The auxiliary stage writes one summary row per
fine-tune (base, task, skill_before, skill_after, skill_metric, vqa_before, vqa_after).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from vlm4vla import stats

from .backbones import detectable, how_sure
from .runs import compare_success, per_seed

_AUX = re.compile(r"^(?P<base>.+)-aux-(?P<task>[a-z_]+)$")


def label_aux(episodes: pd.DataFrame) -> pd.DataFrame:
    """Split backbone names ``<base>-aux-<task>`` into ``base`` and ``aux_task`` (``none`` for a base)."""
    parsed = episodes["backbone"].str.extract(_AUX)
    return episodes.assign(base=parsed["base"].fillna(episodes["backbone"]), aux_task=parsed["task"].fillna("none"))


def seed_success(episodes: pd.DataFrame) -> pd.DataFrame:
    """Mean success over tasks per (base, auxiliary task, seed): the points of the box plots."""
    return per_seed(label_aux(episodes), ["base", "aux_task"])


def versus_base(episodes: pd.DataFrame) -> pd.DataFrame:
    """Each auxiliary fine-tune's VLA success minus its base's, with a 95% interval and a p-value.

    With two or more seeds a side the unit is the seed (Welch t); with one seed (the default profile's
    budget for seeds 1-2) the comparison is with the base run of the same seed over the pooled evaluation
    episodes (Newcombe interval, Fisher exact test), and ``base_seed_sd`` says how much the base alone
    moves between seeds (``runs.compare_success``).
    """
    labelled = label_aux(episodes)
    points = per_seed(labelled, ["base", "aux_task"])
    rows = []
    for (base, task), group in points[points["aux_task"] != "none"].groupby(["base", "aux_task"]):
        ref_points = points[(points["base"] == base) & (points["aux_task"] == "none")]
        if ref_points.empty:
            continue
        x, ref = group["success_rate"].to_numpy(), ref_points["success_rate"].to_numpy()
        diff = compare_success(labelled[(labelled["base"] == base) & (labelled["aux_task"] == task)],
                               labelled[(labelled["base"] == base) & (labelled["aux_task"] == "none")])
        rows.append({"base": base, "aux_task": task, "seeds": len(x), "success": x.mean(), "base_success": diff["reference"],
                     "change": diff["change"], "ci_low": diff["ci_low"], "ci_high": diff["ci_high"],
                     "p_value": diff["p_value"], "unit": diff["unit"],
                     "seed_sd": float(np.std(x, ddof=1)) if len(x) > 1 else float("nan"),
                     "base_seed_sd": float(np.std(ref, ddof=1)) if len(ref) > 1 else float("nan")})
    return pd.DataFrame(rows, columns=["base", "aux_task", "seeds", "success", "base_success", "change", "ci_low",
                                       "ci_high", "p_value", "unit", "seed_sd", "base_seed_sd"])


def skill_vs_control(changes: pd.DataFrame, skills: pd.DataFrame) -> tuple[pd.DataFrame, stats.Correlation | None]:
    """Join auxiliary skill gained with control gained (VLA success change vs the base).

    Skill gained is ``score_after - score_before`` when the summaries have it: the share of probe items
    answered right (exact answer; a point within the task's pixel tolerance; grid cells), one bounded,
    higher-is-better scale for every task. A mean pixel error is not used for the gain: one far-off
    parsed point (an extra digit, "340" for "37") outweighs many good ones, and an unparsed answer is
    scored as the image centre, which is a fair guess on a small frame. Without scores: the headline
    skill, after - before, sign-corrected for error metrics.
    """
    if {"score_before", "score_after"} <= set(skills.columns):
        skills = skills.assign(skill_gain=skills["score_after"] - skills["score_before"], gain_of="score")
    else:
        skills = skills.assign(skill_gain=skills["skill_after"] - skills["skill_before"], gain_of=skills["skill_metric"])
        if "skill_higher_is_better" in skills:
            lower_better = ~skills["skill_higher_is_better"].astype(bool)
        else:
            lower_better = skills["skill_metric"].astype(str).str.contains("error")
        skills.loc[lower_better, "skill_gain"] *= -1
    joined = changes.merge(skills.rename(columns={"task": "aux_task"}), on=["base", "aux_task"], how="inner")
    ok = joined[["skill_gain", "change"]].dropna()
    if len(ok) < 3 or ok["skill_gain"].nunique() < 2:
        return joined, None
    return joined, stats.correlation(ok["skill_gain"], ok["change"], method="spearman")


def conclusions(changes: pd.DataFrame, corr: stats.Correlation | None) -> list[str]:
    """Which of the paper's statements hold here: no auxiliary task helps; most hurt slightly; more variance."""
    lines = []
    for base, group in changes.groupby("base"):
        helped = group[group["ci_low"] > 0]["aux_task"].tolist()
        hurt = group[group["ci_high"] < 0]["aux_task"].tolist()
        lines.append(f"{base}: mean change over {len(group)} auxiliary tasks {group['change'].mean():+.2f}; "
                     f"significantly better than the base: {', '.join(helped) or 'none'}; "
                     f"significantly worse: {', '.join(hurt) or 'none'}; best: {group.loc[group['change'].idxmax(), 'aux_task']}.")
        spread = group.dropna(subset=["seed_sd", "base_seed_sd"])
        if len(spread):
            more_var = (spread["seed_sd"] > spread["base_seed_sd"]).mean()
            lines.append(f"{base}: seed-to-seed spread larger than the base's for {more_var:.0%} of auxiliary tasks "
                         f"(the paper reports more variance after auxiliary fine-tuning).")
        else:
            sd = group["base_seed_sd"].dropna()
            lines.append(f"{base}: one seed per auxiliary task, so the paper's 'more variance' cannot be tested here; "
                         f"the base alone moves by a seed SD of {sd.iloc[0]:.2f}, changes of that size are seed noise."
                         if len(sd) else f"{base}: one seed per auxiliary task and per base: variance not measured.")
    if corr is not None:
        lines.append(f"Auxiliary skill gained vs control gained: Spearman {corr.coefficient:+.2f} "
                     f"(95% CI [{corr.ci_low:+.2f}, {corr.ci_high:+.2f}], permutation p = {corr.p_value:.2g}, n = {corr.n}): "
                     f"{how_sure(corr.ci_low, corr.ci_high, corr.p_value, coefficient=corr.coefficient)}. {detectable(corr.n, 'fine-tunes')}")
    else:
        lines.append("Auxiliary skill gained vs control gained: too few fine-tunes with a measured skill change to correlate.")
    return lines
