"""Finding 1: does a better VLM make a better VLA? Tables and statistics over cached runs.

The replication unit is the training seed: a backbone's success is the mean over its seeds of the
mean over tasks; intervals over seeds are Student-t, pooled-episode intervals are Wilson, and a
difference between two conditions is tested on seeds where both have 2+ (``runs.compare_success``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vlm4vla import stats

from .runs import FIT_COLUMNS, compare_success, per_seed


def fixed_k(episodes: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
    """Rows evaluated with one executed-k (default: per benchmark, the largest k run, i.e. the chunk)."""
    if k is not None:
        return episodes[episodes["k"] == k]
    largest = episodes.groupby("benchmark")["k"].transform("max")
    return episodes[episodes["k"] == largest]


def main_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """Success per backbone (and init) per benchmark: seed mean with t-interval, pooled Wilson interval."""
    rows = []
    for (backbone, init, benchmark), group in episodes.groupby(["backbone", "init", "benchmark"]):
        seeds = per_seed(group, ["backbone"])["success_rate"]
        mean, lo, hi = stats.mean_interval(seeds)
        w_lo, w_hi = stats.wilson_interval(int(group["successes"].sum()), int(group["n"].sum()))
        rows.append({"backbone": backbone, "init": init, "benchmark": benchmark, "success": mean,
                     "seed_ci_low": lo, "seed_ci_high": hi, "pooled_ci_low": w_lo, "pooled_ci_high": w_hi,
                     "seeds": len(seeds), "episodes": int(group["n"].sum())})
    return pd.DataFrame(rows).sort_values(["benchmark", "success"], ascending=[True, False], ignore_index=True)


def init_gap(episodes: pd.DataFrame) -> pd.DataFrame:
    """Pretrained minus from-scratch success per backbone and benchmark, with an interval and a p-value on
    the unit the runs allow (``unit``: seeds when both sides have 2+, else pooled episodes; see
    ``runs.compare_success``), and each side's success on that unit (``pretrained``, ``scratch``)."""
    rows = []
    for (backbone, benchmark), group in episodes.groupby(["backbone", "benchmark"]):
        if set(group["init"]) < {"pretrained", "scratch"}:
            continue
        pre, scr = (group[group["init"] == i] for i in ("pretrained", "scratch"))
        diff = compare_success(pre, scr)
        rows.append({"backbone": backbone, "benchmark": benchmark, "gap": diff["change"], "ci_low": diff["ci_low"],
                     "ci_high": diff["ci_high"], "p_value": diff["p_value"], "unit": diff["unit"],
                     "seeds": (pre["seed"].nunique(), scr["seed"].nunique()),
                     "pretrained": diff["success"], "scratch": diff["reference"]})
    return pd.DataFrame(rows, columns=["backbone", "benchmark", "gap", "ci_low", "ci_high", "p_value", "unit", "seeds",
                                       "pretrained", "scratch"])


def capability_correlations(success: pd.Series, probes: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Spearman and Pearson of every probe column against success, over the backbones both name.

    ``success``: mean success indexed by backbone; ``probes``: numeric probe scores indexed by backbone.
    Bootstrap CIs resample backbones (a resample that repeats one backbone has no coefficient and is
    dropped); p-values are two-sided permutation tests. A probe with fewer than 3 backbones or the same
    score for all of them has no correlation and no row (``constant_probes`` names the latter); nor has
    any probe when success is the same for all of them.
    """
    rows = []
    common = success.index.intersection(probes.index)
    for probe in probes.columns:
        x = probes.loc[common, probe].astype(float)
        ok = x.notna()
        if ok.sum() < 3 or x[ok].nunique() < 2 or success[common][ok].nunique() < 2:
            continue
        for method in ("spearman", "pearson"):
            r = stats.correlation(x[ok].to_numpy(), success[common][ok].to_numpy(), method=method, seed=seed)
            rows.append({"probe": probe, **r.as_dict()})
    return pd.DataFrame(rows, columns=["probe", "method", "coefficient", "ci_low", "ci_high", "p_value", "n"])


def constant_probes(probes: pd.DataFrame, backbones: pd.Index | list[str]) -> list[str]:
    """Probe columns with one value (or none) across ``backbones``: a correlation with them is undefined."""
    rows = probes.loc[probes.index.intersection(backbones)]
    return [c for c in probes.columns if rows[c].dropna().nunique() < 2]


def correlations_by_benchmark(table: pd.DataFrame, probes: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """``capability_correlations`` of the pretrained backbones' success on each benchmark (``main_table``
    rows), stacked with a ``benchmark`` column: one panel per benchmark, as the paper reports them."""
    frames = []
    for benchmark, group in table[table["init"] == "pretrained"].groupby("benchmark"):
        success = group.groupby("backbone")["success"].mean()
        frames.append(capability_correlations(success, probes, seed=seed).assign(benchmark=benchmark))
    columns = ["benchmark", "probe", "method", "coefficient", "ci_low", "ci_high", "p_value", "n"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def fit_and_success(fixed: pd.DataFrame, fit: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its closed-loop success (mean over tasks, ``fixed``'s k) next to how well it fitted
    its demonstrations (``runs.training_fit``, indexed by run; a run without one gets NaN)."""
    per_run = fixed.groupby(["run", "backbone", "init", "seed", "benchmark"], as_index=False)["success_rate"].mean()
    return per_run.rename(columns={"success_rate": "success"}).join(fit, on="run")


def fit_correlations(runs: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per benchmark, Spearman and Pearson of each training-fit column against success over runs
    (``fit_and_success`` rows; the unit is the run, so seeds of one backbone count separately)."""
    frames = []
    for benchmark, group in runs.dropna(subset=FIT_COLUMNS).groupby("benchmark"):
        indexed = group.set_index("run")
        frames.append(capability_correlations(indexed["success"], indexed[FIT_COLUMNS], seed=seed)
                      .rename(columns={"probe": "fit"}).assign(benchmark=benchmark))
    columns = ["benchmark", "fit", "method", "coefficient", "ci_low", "ci_high", "p_value", "n"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def fit_lines(fit_corr: pd.DataFrame) -> list[str]:
    """Conclusion lines from ``fit_correlations``: does the gripper accuracy a policy reached on its training
    batches predict its closed-loop success, per benchmark (Spearman over runs)?"""
    lines = []
    rows = fit_corr[(fit_corr["fit"] == "acc_gripper") & (fit_corr["method"] == "spearman")]
    for row in rows.itertuples():
        lines.append(f"Training fit vs closed-loop success on {row.benchmark}: the gripper accuracy a run reached on its "
                     f"training batches, Spearman {row.coefficient:+.2f} (95% CI [{row.ci_low:+.2f}, {row.ci_high:+.2f}], "
                     f"permutation p = {row.p_value:.2g}, n = {row.n} runs); "
                     f"{how_sure(row.ci_low, row.ci_high, row.p_value, coefficient=row.coefficient)}. {detectable(row.n, 'runs')}")
    return lines


def convergence(histories: pd.DataFrame, runs: pd.DataFrame, window: int = 500) -> pd.DataFrame:
    """Was each run still learning when its training budget ran out? One row per run of ``runs`` (columns
    run, backbone, init, benchmark) with a history (``runs.load_histories``): the arm loss and gripper
    accuracy over its last ``window`` steps and over the ``window`` before, and ``arm_loss_drop``, the
    share by which the arm loss fell between the two (0.10: 10% lower at the end). A run shorter than
    two windows is left out."""
    rows = []
    for run, history in histories.groupby("run", sort=False):
        end = history["step"].max()
        last = history[history["step"] > end - window]
        before = history[(history["step"] > end - 2 * window) & (history["step"] <= end - window)]
        if before.empty or last.empty:
            continue
        rows.append({"run": run, "steps": int(end),
                     "loss_arm_before": before["loss_arm"].mean(), "loss_arm_last": last["loss_arm"].mean(),
                     "acc_gripper_before": before["acc_gripper"].mean(), "acc_gripper_last": last["acc_gripper"].mean()})
    columns = ["run", "steps", "loss_arm_before", "loss_arm_last", "acc_gripper_before", "acc_gripper_last"]
    table = pd.DataFrame(rows, columns=columns)
    table["arm_loss_drop"] = 1.0 - table["loss_arm_last"] / table["loss_arm_before"]
    meta = runs[["run", "backbone", "init", "benchmark"]].drop_duplicates("run")
    return meta.merge(table, on="run").sort_values(["benchmark", "backbone", "init", "run"], ignore_index=True)


def convergence_lines(table: pd.DataFrame, window: int = 500, threshold: float = 0.05) -> list[str]:
    """Conclusion lines from ``convergence``, per benchmark: how many runs' arm loss still fell by at least
    ``threshold`` over their last ``window`` steps (their success measures the budget as much as the
    backbone), and the median and range of that fall."""
    lines = []
    for benchmark, group in table.groupby("benchmark"):
        drop = group["arm_loss_drop"]
        learning = group[drop >= threshold]
        steps = int(group["steps"].max())
        verdict = (f"{len(learning)} of {len(group)} runs were still learning when training stopped at {steps} steps "
                   f"(arm loss {threshold:.0%} or more lower over the last {window} steps than over the {window} before; "
                   f"median fall {drop.median():.0%}, range {drop.min():.0%} to {drop.max():.0%})")
        if len(learning) * 2 > len(group):
            verdict += (": success here is measured at a budget that stops most runs mid-way, so it ranks how fast "
                        "a backbone learns as much as how far it can get")
        lines.append(f"On {benchmark}, {verdict}.")
    return lines


def cross_benchmark(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Does the backbones' ranking carry over between benchmarks? Spearman and Pearson of the pretrained
    backbones' success on each pair of benchmarks, over the backbones run on both. A pair with fewer than
    3 such backbones, or where one benchmark gives them all the same success, has no correlation and no row."""
    wide = table[table["init"] == "pretrained"].pivot_table(index="backbone", columns="benchmark", values="success")
    rows = []
    names = list(wide.columns)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = wide[[a, b]].dropna()
            if len(both) < 3 or both[a].nunique() < 2 or both[b].nunique() < 2:
                continue
            for method in ("spearman", "pearson"):
                r = stats.correlation(both[a].to_numpy(), both[b].to_numpy(), method=method, seed=seed)
                rows.append({"benchmarks": f"{a} vs {b}", **r.as_dict()})
    return pd.DataFrame(rows, columns=["benchmarks", "method", "coefficient", "ci_low", "ci_high", "p_value", "n"])


def best_predictor(correlations: pd.DataFrame, method: str = "spearman") -> pd.Series | None:
    """The probe whose correlation with success is strongest in either direction (an error metric
    predicts through a negative coefficient), or None if there is none."""
    table = correlations[correlations["method"] == method]
    return None if table.empty else table.loc[table["coefficient"].abs().idxmax()]


def selection_effect(episodes: pd.DataFrame, early: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per backbone: the pre-registered rule (final checkpoint, the largest k) against choosing after
    the fact the best k, and the best (k, checkpoint), as the paper reports the best of several.

    Only runs evaluated under several choices count (the sweep runs, e.g. seed 0); choosing the
    maximum of noisy estimates is optimistic, which ``optimism`` makes explicit.
    ``early``: rows of ``load_early_checkpoints`` (a ``step`` column); final rows are step "final".
    """
    final = episodes[episodes["init"] == "pretrained"].assign(step="final")
    rows = final if early is None or early.empty else pd.concat(
        [final, early[early["init"] == "pretrained"].assign(step=early["step"].astype(str))], ignore_index=True)
    choices = rows.groupby(["run", "backbone", "benchmark", "k", "step"])["success_rate"].mean().reset_index()
    swept = choices.groupby("run").size().loc[lambda n: n > 1].index
    choices = choices[choices["run"].isin(swept)]
    largest_k = episodes.groupby("benchmark")["k"].max()
    out = []
    for (backbone, benchmark), group in choices.groupby(["backbone", "benchmark"]):
        fixed_k_value = int(largest_k[benchmark])
        # over the swept runs (seeds); largest k and the final checkpoint first, so a tie keeps the fixed rule
        mean = group.groupby(["k", "step"])["success_rate"].mean().sort_index(ascending=False)
        at_final = mean.xs("final", level="step")
        best_choice = mean.idxmax()
        out.append({"backbone": backbone, "benchmark": benchmark, "runs": group["run"].nunique(),
                    "fixed_k": mean.get((fixed_k_value, "final"), np.nan), "best_of_k": at_final.max(),
                    "best_k": int(at_final.idxmax()), "best_of_k_and_checkpoint": mean.max(),
                    "best_choice": f"k={best_choice[0]}, step {best_choice[1]}"})
    table = pd.DataFrame(out, columns=["backbone", "benchmark", "runs", "fixed_k", "best_of_k", "best_k",
                                       "best_of_k_and_checkpoint", "best_choice"])
    table["optimism"] = table["best_of_k_and_checkpoint"] - table["fixed_k"]
    return table


def task_profile(episodes: pd.DataFrame) -> pd.DataFrame:
    """Success per task (columns) per backbone (rows), pretrained runs, mean over seeds: radar input."""
    pretrained = episodes[episodes["init"] == "pretrained"]
    return pretrained.groupby(["backbone", "task"])["success_rate"].mean().unstack("task")


def tied_with_best(group: pd.DataFrame) -> list[str]:
    """Backbones of one benchmark's ``main_table`` rows (best first, the best itself left out) whose upper
    interval bound reaches the best mean: the seed t-interval where a backbone has 2+ seeds, else the
    pooled Wilson interval, each name marked with the interval used ("seeds" / "episodes")."""
    top, rest = group.iloc[0]["success"], group.iloc[1:]
    upper = rest["seed_ci_high"].where(rest["seeds"] >= 2, rest["pooled_ci_high"])
    basis = np.where(rest["seeds"] >= 2, "seeds", "episodes")
    return [f"{b} ({how})" for b, u, how in zip(rest["backbone"], upper, basis) if u >= top]


def how_sure(ci_low: float, ci_high: float, p_value: float, alpha: float = 0.05,
             coefficient: float | None = None, one_above_ties: bool = False) -> str:
    """A correlation counts as established only when its bootstrap interval excludes 0 and its permutation
    p-value is below ``alpha``: with a handful of backbones the percentile bootstrap is narrow where the
    permutation test (exact about the ranking) is not, so either alone would overstate.

    ``coefficient``: the estimate; an interval that does not contain it is degenerate (when most points
    tie, e.g. backbones that all score 0, the resamples without the few that differ have no coefficient
    and are dropped, so the interval describes only the resamples that keep them) and is not evidence.
    ``one_above_ties``: all points but one tie on one variable (``few_succeed``); the interval is then
    such a degenerate one wherever it lies (it can end at the estimate or just include it), so it is not
    evidence either."""
    if one_above_ties:
        return (f"not established: all backbones but one tie at 0, so the bootstrap interval describes only the "
                f"resamples that keep that one (the others have no coefficient); only the permutation p counts, "
                f"{p_value:.2g}")
    if coefficient is not None and not ci_low - 1e-9 <= coefficient <= ci_high + 1e-9:
        return (f"not established: the bootstrap interval does not contain the estimate (most resamples tie "
                f"and have no coefficient), so only the permutation p counts, {p_value:.2g}")
    excludes = ci_low > 0 or ci_high < 0
    if excludes and p_value < alpha:
        return f"established (the interval excludes 0 and p < {alpha:g})"
    if excludes:
        return f"not established: the bootstrap interval excludes 0 but the permutation p is {p_value:.2g}"
    return "not established: the interval includes 0"


def detectable(n: int, unit: str = "backbones", alpha: float = 0.05) -> str:
    """What ``n`` points can show at all: the smallest |Spearman| that reaches p < ``alpha``."""
    critical = stats.critical_spearman(n, alpha) if n >= 3 else float("nan")
    if np.isnan(critical):
        return f"With n = {n} {unit} no Spearman coefficient can reach p < {alpha:g}."
    return f"With n = {n} {unit} only |Spearman| >= {critical:.2f} can reach p < {alpha:g}."


def conclusions(table: pd.DataFrame, gaps: pd.DataFrame, correlations: pd.DataFrame) -> list[str]:
    """Plain-language statements computed from the numbers: which of the paper's claims hold here."""
    lines = []
    for row in gaps.itertuples():
        verdict = ("holds" if row.ci_low > 0 else "is reversed" if row.ci_high < 0
                   else f"cannot be tested (neither ever succeeded on {row.benchmark}: a floor)"
                   if row.pretrained == 0 and row.scratch == 0 else "does not hold (interval includes 0)")
        caveat = (" One seed a side: the interval covers the evaluation episodes, not how much re-training moves the "
                  "result." if row.unit.startswith("episodes") else "")
        lines.append(f"VLM initialisation beats from-scratch for {row.backbone} on {row.benchmark}: {verdict} "
                     f"(gap {row.gap:+.2f}, 95% CI [{row.ci_low:+.2f}, {row.ci_high:+.2f}], p = {row.p_value:.2g}; "
                     f"unit: {row.unit}).{caveat}")
    if "benchmark" not in correlations.columns:
        correlations = correlations.assign(benchmark="the benchmark")
    tied = one_above_ties(table)
    for benchmark, corr in correlations.groupby("benchmark", sort=False):
        general = corr[(corr["probe"] == "general_vqa_accuracy") & (corr["method"] == "spearman")]
        for row in general.itertuples():
            strength = "strongly positive" if row.coefficient > 0.6 else "weak or negative" if row.coefficient < 0.3 else "moderately positive"
            sure = how_sure(row.ci_low, row.ci_high, row.p_value, coefficient=row.coefficient,
                            one_above_ties=benchmark in tied)
            lines.append(f"General VQA accuracy vs control success on {benchmark}: Spearman {row.coefficient:+.2f} "
                         f"(95% CI [{row.ci_low:+.2f}, {row.ci_high:+.2f}], permutation p = {row.p_value:.2g}, n = {row.n} backbones): "
                         f"{strength}; {sure}. {detectable(row.n)} The paper reads about +0.8 on CALVIN and -0.4 / -0.2 "
                         f"on Simpler / LIBERO.")
        best = best_predictor(corr)
        n_probes = corr["probe"].nunique()
        if best is not None:
            sure = how_sure(best["ci_low"], best["ci_high"], best["p_value"], coefficient=best["coefficient"],
                            one_above_ties=benchmark in tied)
            lines.append(f"Strongest predictor of control on {benchmark} among the probes: {best['probe']} (Spearman "
                         f"{best['coefficient']:+.2f}, 95% CI [{best['ci_low']:+.2f}, {best['ci_high']:+.2f}], permutation "
                         f"p = {best['p_value']:.2g}, n = {best['n']} backbones); {sure}. It was picked among {n_probes} "
                         f"probes: Bonferroni-adjusted p = {min(1.0, best['p_value'] * n_probes):.2g}.")
    pretrained = table[table["init"] == "pretrained"]
    for benchmark, group in pretrained.groupby("benchmark"):
        top = group.iloc[0]
        if len(group) == 1:
            lines.append(f"On {benchmark} only {top['backbone']} has finished runs so far ({top['success']:.2f}): no ranking yet.")
            continue
        if group["success"].nunique() == 1:
            lines.append(f"On {benchmark} all {len(group)} backbones with finished runs have the same success "
                         f"({top['success']:.2f}): no ranking, and no correlation with it is defined.")
            continue
        lines.append(f"On {benchmark} the best backbone is {top['backbone']} ({top['success']:.2f}); "
                     f"statistically tied with it: {', '.join(tied_with_best(group)) or 'none'}.")
        if line := few_succeed(benchmark, group):
            lines.append(line)
    return lines


def one_above_ties(table: pd.DataFrame) -> set[str]:
    """Benchmarks of ``main_table`` rows where all pretrained backbones but one never succeeded
    (``few_succeed``): any correlation with success there is degenerate (``how_sure``)."""
    pretrained = table[table["init"] == "pretrained"]
    return {b for b, group in pretrained.groupby("benchmark") if few_succeed(b, group) is not None}


def few_succeed(benchmark: str, group: pd.DataFrame) -> str | None:
    """A conclusion line when all but one of a benchmark's backbones (``main_table`` rows of one
    benchmark and init) never succeeded: every correlation with success there then only says where that
    one backbone sits on the other variable. With n backbones and one above a tie, a permutation moves it
    to each of n ranks alike, and only the two extreme ranks reach the largest |Spearman|, so no Spearman
    permutation p can fall below 2/n. None otherwise."""
    succeeded = group[group["success"] > 0]
    if len(group) < 3 or len(succeeded) != 1:
        return None
    return (f"On {benchmark}, {len(group) - 1} of {len(group)} backbones never succeeded (success 0 in every "
            f"episode); only {succeeded.iloc[0]['backbone']} did. Every correlation with success on {benchmark} "
            f"therefore only says where that one backbone ranks among the {len(group)} on the other variable, and "
            f"no Spearman permutation p can fall below 2/{len(group)} = {2 / len(group):.2f}: the probes cannot be told "
            f"apart there.")
