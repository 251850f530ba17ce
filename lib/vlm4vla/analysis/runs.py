"""Cached policy runs as tidy tables.

A run's results are a folder ``artifacts/run-results/<name>/`` (git-tracked; copied there by
``notebooks/02-train-policy.py`` from the run folder, whose checkpoints need not be on this machine) with
``eval_results.json`` (the harness's dict per executed-k, final policy) and, when earlier checkpoints
were evaluated, ``eval_checkpoints.json`` (per training step, at the first k), next to its headline
metrics ``artifacts/metrics/runs/<name>.json`` (backbone, init, freeze, seed). Nothing is recomputed here.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from vlm4vla import stats
from vlm4vla.constants import RUN_RESULTS_DIR

EPISODE_COLUMNS = ["run", "backbone", "init", "freeze", "seed", "benchmark", "k", "task", "successes", "n", "success_rate"]
_NUMERIC = {"seed": "int64", "k": "int64", "successes": "int64", "n": "int64", "success_rate": "float64"}


def empty_episodes() -> pd.DataFrame:
    """A table of EPISODE_COLUMNS with no rows and the dtypes loaded runs have (concatenating it keeps them)."""
    return pd.DataFrame({c: pd.Series(dtype=_NUMERIC.get(c, "object")) for c in EPISODE_COLUMNS})


def backbone_name(path: str) -> str:
    """The zoo name of a backbone path (``artifacts/zoo/qwen-small`` -> ``qwen-small``)."""
    return Path(str(path)).name


def load_run(run_dir: Path, metrics: dict[str, Any]) -> pd.DataFrame:
    """One run's per-task success for every executed k, as rows of EPISODE_COLUMNS."""
    results_file = run_dir / "eval_results.json"
    if not results_file.exists():
        raise FileNotFoundError(f"{results_file} is missing: re-run the stage `dvc repro train@{run_dir.name}`")
    results = json.loads(results_file.read_text())
    return _rows(run_dir, metrics, {int(k): r for k, r in results.items()})


def load_early_checkpoints(root: Path, prefix: str = "") -> pd.DataFrame:
    """Per-task success of the earlier checkpoints (EPISODE_COLUMNS + ``step``); empty if none."""
    metrics_dir, runs_dir = root / "artifacts/metrics/runs", root / RUN_RESULTS_DIR
    frames = []
    for metrics_file in sorted(metrics_dir.glob(f"{prefix}*.json")):
        early_file = runs_dir / metrics_file.stem / "eval_checkpoints.json"
        if not early_file.exists():
            continue
        metrics = json.loads(metrics_file.read_text())
        for step, result in json.loads(early_file.read_text()).items():
            rows = _rows(runs_dir / metrics_file.stem, metrics, {int(result["eval"]["execute_k"]): result})
            frames.append(rows.assign(step=int(step)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*EPISODE_COLUMNS, "step"])


def _rows(run_dir: Path, metrics: dict[str, Any], results: dict[int, dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for k, result in results.items():
        benchmark = result.get("suite", {}).get("benchmark", "metaworld")
        for task, t in result["per_task"].items():
            rows.append({
                "run": run_dir.name, "backbone": backbone_name(metrics.get("backbone", "?")),
                "init": metrics.get("init", "pretrained"), "freeze": metrics.get("freeze", "full"),
                "seed": metrics.get("seed", 0), "benchmark": benchmark, "k": k, "task": task,
                "successes": int(t["successes"]), "n": int(t["n"]), "success_rate": float(t["success_rate"]),
            })
    return pd.DataFrame(rows, columns=EPISODE_COLUMNS)


def load_runs(root: Path, prefix: str = "") -> pd.DataFrame:
    """Every cached run whose name starts with ``prefix`` (e.g. ``bb-`` for finding 1), tidy."""
    metrics_dir, runs_dir = root / "artifacts/metrics/runs", root / RUN_RESULTS_DIR
    frames = []
    for metrics_file in sorted(metrics_dir.glob(f"{prefix}*.json")):
        metrics = json.loads(metrics_file.read_text())
        frames.append(load_run(runs_dir / metrics_file.stem, metrics))
    if not frames:
        raise FileNotFoundError(f"no runs named {prefix}* under {runs_dir}: run `dvc repro` first")
    return pd.concat(frames, ignore_index=True)


def load_finished(root: Path, prefixes: list[str] | tuple[str, ...], required: bool = True) -> pd.DataFrame:
    """``load_runs`` of every prefix that has finished runs, concatenated (a prefix without any is skipped
    and said so: a partial reproduction still renders). If no prefix has a run: raises, or with
    ``required=False`` returns an empty table of EPISODE_COLUMNS."""
    frames = []
    for prefix in prefixes:
        try:
            frames.append(load_runs(root, prefix))
        except FileNotFoundError:
            print(f"no finished {prefix}* runs: skipped")
    if not frames:
        if not required:
            return empty_episodes()
        raise FileNotFoundError(f"no finished runs named {' or '.join(prefixes)}*: run `dvc repro` first")
    return pd.concat(frames, ignore_index=True)


FIT_COLUMNS = ["loss_arm", "loss_gripper", "acc_gripper"]


def training_fit(histories: pd.DataFrame, last: int = 200) -> pd.DataFrame:
    """How well each run fitted its demonstrations: ``FIT_COLUMNS`` of its history (``load_histories``) averaged
    over the last ``last`` logged steps (one row per run, indexed by run name, in the histories' order).

    ``acc_gripper`` is the share of the batch's gripper commands (open / closed) the head gets right,
    the one training figure on the same scale for every benchmark.
    """
    rows = {run: fit_at(history, last=last) for run, history in histories.groupby("run", sort=False)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=FIT_COLUMNS).rename_axis("run")


def load_histories(root: Path, runs: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """The training histories (``history.csv``: one row per logged step) of ``runs``, stacked with a ``run``
    column, in the order of ``runs``; a run without a history is left out."""
    frames = [pd.read_csv(path).assign(run=run) for run in runs
              if (path := Path(root) / RUN_RESULTS_DIR / run / "history.csv").is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "step", *FIT_COLUMNS])


def fit_at(history: pd.DataFrame, step: int | None = None, last: int = 200) -> pd.Series:
    """``FIT_COLUMNS`` of a ``history.csv`` table averaged over the ``last`` logged steps up to ``step``
    (the end of training if None)."""
    history = history.sort_values("step")
    if step is not None:
        history = history[history["step"] <= step]
    return history[FIT_COLUMNS].tail(last).mean()


def per_seed(episodes: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean success over tasks for each seed of each group (the unit of replication is the seed)."""
    return episodes.groupby([*by, "seed"], as_index=False)["success_rate"].mean()


def compare_success(mine: pd.DataFrame, theirs: pd.DataFrame) -> dict[str, Any]:
    """Success of one condition's episode rows ``mine`` minus another's ``theirs``, with a 95% interval
    and a two-sided p-value, on the unit the runs allow (``unit`` names it):

    - 2+ seeds a side: the seed (mean over tasks per seed), Welch t-interval and t-test;
    - otherwise the evaluation episode, pooled over the seeds both sides have (all seeds when they share
      none): Newcombe interval and Fisher exact test. This is narrower than a seed interval would be,
      since it leaves out how much a re-trained seed moves.

    Returns ``change``, ``ci_low``, ``ci_high``, ``p_value``, ``unit``, ``success`` and ``reference``
    (each side's success on the unit compared).
    """
    a, b = (per_seed(x, []).set_index("seed")["success_rate"] for x in (mine, theirs))
    if len(a) >= 2 and len(b) >= 2 and (a.var() > 0 or b.var() > 0):
        with warnings.catch_warnings():  # one side's seeds may agree exactly (e.g. 0.205, 0.205): a valid Welch
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)  # test; scipy warns anyway
            change, lo, hi, p = stats.welch_diff(a.to_numpy(), b.to_numpy())
        return {"change": change, "ci_low": lo, "ci_high": hi, "p_value": p, "unit": f"seeds ({len(a)} vs {len(b)}, Welch t)",
                "success": float(a.mean()), "reference": float(b.mean())}
    shared = sorted(set(a.index) & set(b.index))
    if shared:
        mine, theirs = mine[mine["seed"].isin(shared)], theirs[theirs["seed"].isin(shared)]
        unit = f"episodes, seed {', '.join(map(str, shared))}"
    else:
        unit = f"episodes, seeds {', '.join(map(str, a.index))} vs {', '.join(map(str, b.index))}"
    (s1, n1), (s2, n2) = ((int(x["successes"].sum()), int(x["n"].sum())) for x in (mine, theirs))
    change, lo, hi = stats.newcombe_diff(s1, n1, s2, n2)
    return {"change": change, "ci_low": lo, "ci_high": hi, "p_value": stats.two_proportion_test(s1, n1, s2, n2),
            "unit": unit, "success": s1 / n1, "reference": s2 / n2}


def coverage(root: Path, prefixes: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """The runs the profile plans (``runs`` in params.yaml) whose names start with one of ``prefixes``,
    and whether each has finished (its metrics file exists): one row per run, ``run``, ``prefix``,
    ``seed``, ``done``, ``backbone`` (the checkpoint path it trains from) and ``build`` (the DVC hash
    dvc.lock recorded for that checkpoint when the run finished; None if not recorded), and likewise
    ``demos`` and ``demos_build`` for its demonstrations. A finding
    notebook shows this first, so a partial reproduction says what it lacks.
    """
    params = yaml.safe_load((Path(root) / "params.yaml").read_text()) or {}
    lock_file = Path(root) / "dvc.lock"
    lock = (yaml.safe_load(lock_file.read_text()) or {}).get("stages", {}) if lock_file.is_file() else {}
    metrics_dir = Path(root) / "artifacts/metrics/runs"

    def build(name: str, backbone: str | None) -> str | None:
        deps = (lock.get(f"train@{name}") or {}).get("deps") or []
        return next((d.get("md5") for d in deps if backbone and d.get("path") == backbone), None)

    rows = []
    for name, cfg in (params.get("runs") or {}).items():
        for prefix in prefixes:
            if name.startswith(prefix):
                backbone = (cfg.get("run") or {}).get("backbone")
                done = (metrics_dir / f"{name}.json").is_file()
                demos = cfg.get("demos_dir")
                rows.append({"run": name, "prefix": prefix, "seed": int((cfg.get("run") or {}).get("seed", 0)),
                             "done": done, "backbone": backbone, "build": build(name, backbone) if done else None,
                             "demos": demos, "demos_build": build(name, demos) if done else None})
    return pd.DataFrame(rows, columns=["run", "prefix", "seed", "done", "backbone", "build", "demos", "demos_build"])


def coverage_note(table: pd.DataFrame) -> str:
    """One Markdown paragraph from ``coverage``: finished / planned per prefix and seed, and what is missing."""
    if table.empty:
        return "The profile plans no runs for this finding."
    parts = []
    for prefix, group in table.groupby("prefix", sort=False):
        by_seed = ", ".join(f"seed {s}: {int(g['done'].sum())}/{len(g)}" for s, g in group.groupby("seed"))
        parts.append(f"`{prefix}*` {int(group['done'].sum())} of {len(group)} planned runs finished ({by_seed})")
    missing = table.loc[~table["done"], "run"].tolist()
    note = "; ".join(parts) + "."
    if missing:
        shown = ", ".join(f"`{m}`" for m in missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
        note += (f" **This report is partial**: everything below uses the finished runs only. Not yet run: {shown} "
                 "(`make repro` continues where it stopped).")
    return note + rebuilt_inputs_note(table)


def rebuilt_inputs_note(table: pd.DataFrame) -> str:
    """A sentence naming the backbones whose finished runs trained from more than one build of the
    checkpoint (``coverage``'s ``build``), one naming demonstrations likewise, or "" if none did.

    The zoo and the fine-tuned VLMs are rebuilt on a fresh machine (DVC's cache does not survive it);
    the same seeded code gives other bytes there (CPU float kernels differ between machines), so runs of
    one backbone from different sittings started from slightly different weights, and their
    seed-to-seed spread includes that of the backbone's build."""
    note = ""
    for column, what in (("build", "Backbones"), ("demos_build", "Demonstrations")):
        if column not in table:
            continue
        path = "backbone" if column == "build" else "demos"
        done = table[table["done"] & table[column].notna()]
        builds = done.groupby(path)[column].agg(["nunique", "size"])
        several = builds[builds["nunique"] > 1]
        if not several.empty:
            named = ", ".join(f"`{backbone_name(b)}` ({int(r['nunique'])} builds over {int(r['size'])} runs)"
                              for b, r in several.iterrows())
            effects = sorted({_rebuild_effect(column, backbone_name(b)) for b in several.index})
            note += (f" {what} rebuilt between sittings: {named}. A rebuild on a fresh machine runs the same "
                     f"seeded code but can give other bytes; {'; '.join(effects)}.")
    return note


EQUIVALENCE_CHECKED = ("demonstrations",)  # recordings whose variants benchmarks/demos_equivalence_check.py compared


def _rebuild_effect(column: str, name: str) -> str:
    """What a rebuild of ``name`` means for the runs that read it (``rebuilt_inputs_note``)."""
    if column == "build":
        return ("these runs started from slightly different weights and their seed-to-seed spread includes "
                "that of the build")
    if name in EQUIVALENCE_CHECKED:
        return f"the `{name}` variants checked train bit-identically (`benchmarks/demos_equivalence_check.py`)"
    return (f"no check that the `{name}` variants train the same was run (the LIBERO recording differs between "
            "machines by a few frames of ~26,600), so these runs' spread includes that of the recording")
