"""How far the active profile's policy runs are, and how long the rest should take.

The default profile's 114 runs take days on 2 cores, so a reproduction runs over several sittings.
``run_progress`` reads what the profile plans (``runs`` in params.yaml) and what has finished (each
run's metrics file, written last by its stage), with the measured wall time of each finished run;
``progress_report`` turns that into the lines ``vlm4vla progress`` prints: finished / planned per run
family and benchmark, and the remaining time estimated from the finished runs of the same benchmark
(none is guessed for a benchmark with no finished run). A run's time is its training plus one
closed-loop evaluation pass per executed k and per earlier checkpoint (finding 1's seed-0 runs make
four passes, the others one), so a run is estimated by the median finished run of its benchmark with
as many passes, or, where none has finished, by the median training time plus its passes at the
median measured time per pass. Wall times are measured as the runs ran (two at a time under
``make repro``); a resumed run's time counts its last sitting only.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class RunState:
    """One planned run: its family (``bb``, ``fz``, ...), benchmark, seed, and wall time once finished."""

    name: str
    family: str
    benchmark: str
    seed: int
    wall_time_s: float | None  # None: not finished
    passes: int = 1  # closed-loop evaluation passes: one per executed k, one per earlier checkpoint
    train_s: float | None = None  # the training part of wall_time_s (steps x batch / samples per s), if known

    @property
    def done(self) -> bool:
        return self.wall_time_s is not None


ALONE_BENCHMARK = "libero"  # its runs are scheduled alone (``schedule.alone_stages``)


def run_progress(root: Path) -> list[RunState]:
    """Every run of params.yaml in its planned order, finished or not."""
    params_file = Path(root) / "params.yaml"
    if not params_file.is_file():
        raise FileNotFoundError(f"{params_file} is missing: write it with `vlm4vla profile <name>`")
    runs = (yaml.safe_load(params_file.read_text()) or {}).get("runs") or {}
    states = []
    for name, cfg in runs.items():
        metrics_file = Path(root) / "artifacts/metrics/runs" / f"{name}.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
        run, evaluation = cfg.get("run") or {}, cfg.get("evaluation") or {}
        train_s = None
        if metrics and metrics.get("train_samples_per_s") and "batch_size" in run:
            train_s = metrics.get("train_steps", run.get("steps", 0)) * run["batch_size"] / metrics["train_samples_per_s"]
        states.append(RunState(name=name, family=name.split("-", 1)[0],
                               benchmark=(cfg.get("suite") or {}).get("benchmark", "metaworld"),
                               seed=int(run.get("seed", 0)),
                               wall_time_s=metrics.get("wall_time_s", float("nan")) if metrics is not None else None,
                               passes=len(evaluation.get("execute_k") or [4]) + len(evaluation.get("checkpoints") or []),
                               train_s=train_s))
    return states


def progress_report(states: list[RunState], jobs: int = 2) -> list[str]:
    """Lines for the terminal: totals, one line per (family, benchmark), then the time estimate."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if not states:
        return ["params.yaml plans no policy runs."]
    lines = [f"{sum(s.done for s in states)} of {len(states)} planned runs finished"]
    groups: dict[tuple[str, str], list[RunState]] = {}
    for s in states:
        groups.setdefault((s.family, s.benchmark), []).append(s)
    for (family, benchmark), group in groups.items():
        seeds = sorted({s.seed for s in group})
        by_seed = ", ".join(f"seed {seed}: {sum(s.done for s in group if s.seed == seed)}/"
                            f"{sum(s.seed == seed for s in group)}" for seed in seeds)
        lines.append(f"  {family + '-*':<5} {benchmark:<10} {sum(s.done for s in group):>3}/{len(group):<3} ({by_seed})")
    remaining_s, alone_s, unknown = 0.0, 0.0, []
    medians = _median_wall_times(states)
    expected = expected_stage_seconds(states)
    for benchmark in dict.fromkeys(s.benchmark for s in states):
        mine = [s for s in states if s.benchmark == benchmark]
        todo = [s for s in mine if not s.done]
        if not todo:
            continue
        if benchmark not in medians:
            unknown.append(f"{len(todo)} {benchmark} runs (none finished yet, no measured time)")
            continue
        median, measured = medians[benchmark]
        seconds = sum(expected[f"train@{s.name}"] for s in todo)
        remaining_s += seconds
        if benchmark == ALONE_BENCHMARK:
            alone_s += seconds
        longer = sum(s.passes > 1 for s in todo)
        lines.append(f"  {benchmark}: {len(todo)} runs to go, {seconds / 3600:.1f} h (a median {median / 60:.0f} min "
                     f"each, measured over {measured} finished runs"
                     + (f"; {longer} with several evaluation passes take longer" if longer else "") + ")")
    if remaining_s:
        # the scheduler runs each LIBERO run alone, so only the rest share the jobs
        wall_s = alone_s + (remaining_s - alone_s) / jobs
        lines.append(f"estimated remaining: {remaining_s / 3600:.1f} h of stage time, about "
                     f"{wall_s / 3600:.1f} h with {jobs} stages at once"
                     + (f" ({ALONE_BENCHMARK} runs one at a time)" if alone_s else "")
                     + (f", plus {'; '.join(unknown)}" if unknown else ""))
    elif unknown:
        lines.append(f"remaining: {'; '.join(unknown)}")
    return lines


def _median_wall_times(states: list[RunState]) -> dict[str, tuple[float, int]]:
    """``{benchmark: (median wall time of its finished runs in s, how many)}``; benchmarks with none are absent."""
    measured: dict[str, list[float]] = {}
    for s in states:
        if s.done and math.isfinite(s.wall_time_s):
            measured.setdefault(s.benchmark, []).append(s.wall_time_s)
    return {b: (statistics.median(times), len(times)) for b, times in measured.items()}


def expected_stage_seconds(states: list[RunState]) -> dict[str, float]:
    """``{"train@<run>": seconds}`` for each unfinished run whose benchmark has finished runs.

    The median finished run of the same benchmark with as many evaluation passes; where none has
    finished, the median training time plus the run's passes at the median time per pass (the wall
    time less the training, over the passes, of the finished runs that say how fast they trained); where
    no finished run says that either, the median finished run times the passes (an upper bound)."""
    finished = [s for s in states if s.done and math.isfinite(s.wall_time_s)]
    expected = {}
    for s in states:
        if s.done:
            continue
        same = [f for f in finished if f.benchmark == s.benchmark]
        if not same:
            continue
        alike = [f.wall_time_s for f in same if f.passes == s.passes]
        timed = [f for f in same if f.train_s is not None]
        if alike:
            seconds = statistics.median(alike)
        elif timed:
            per_pass = statistics.median((f.wall_time_s - f.train_s) / f.passes for f in timed)
            seconds = statistics.median(f.train_s for f in timed) + s.passes * per_pass
        else:
            seconds = statistics.median(f.wall_time_s / f.passes for f in same) * s.passes
        expected[f"train@{s.name}"] = seconds
    return expected


def running_lines(root: Path, stages: dict[int, str]) -> list[str]:
    """One line per running ``train@<run>`` stage (``stages``: pid -> stage, see
    ``schedule.stages_running``): how far its training is (the last step DVCLive logged, of the steps
    planned), or that it is evaluating (its training summary is written)."""
    runs = (yaml.safe_load((Path(root) / "params.yaml").read_text()) or {}).get("runs") or {}
    lines = []
    for pid, stage in sorted(stages.items(), key=lambda item: item[1]):
        name = stage.split("@", 1)[1] if stage.startswith("train@") else None
        if name is None:
            lines.append(f"  running: {stage} (pid {pid})")
            continue
        out = Path(root) / "artifacts/runs" / name
        planned = ((runs.get(name) or {}).get("run") or {}).get("steps", "?")
        live = out / "live" / "metrics.json"
        if (out / "eval_results.json").is_file():
            state = "evaluated, writing its report"
        elif (out / "train_summary.json").is_file():
            counts = [json.loads(f.read_text()) for f in sorted((out / "evals").glob("*.progress.json"))]
            state = "evaluating (training finished)" + "".join(
                f", {c['done']} of {c['total']} episodes" for c in counts if isinstance(c, dict) and "done" in c)
        elif live.is_file():
            state = f"training, step {json.loads(live.read_text()).get('step', '?')} of {planned}"
        else:
            state = "starting"
        lines.append(f"  running: {name}: {state} (pid {pid})")
    return lines
