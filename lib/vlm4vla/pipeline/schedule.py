"""Run the DVC pipeline with several stages at once.

``dvc repro`` runs one stage at a time. On 2 cores two one-thread trainings side by side give about
1.3x the throughput of one two-thread training after the other (TOOLCHAIN.md), and most of the
default profile is independent ``train@<run>`` stages. DVC documents the way to run independent
stages in parallel: one ``dvc repro --single-item <stage>`` per stage, in separate processes
(https://dvc.org/doc/command-reference/repro#parallel-stage-execution). DVC releases its repository
lock while a stage's command runs and takes it again to record the result, so a start can meet a
busy lock; it is retried.

``parallel_repro`` plans from DVC's own stage graph and stage status with DVC's ``--allow-missing``
rule: a stage whose outputs or inputs are merely absent from this machine (a fresh clone: results
are in git, checkpoints and demonstrations only in the DVC cache of the machine that made them) is not
changed. The plan is the stages that changed and everything downstream of them, each started once its
upstream stages have finished, plus the unchanged stages whose absent outputs a planned stage reads:
those are run again first (``dvc repro -f``; the pipeline is seeded, but another machine can give
other bytes from the same code: the finished stages that read the earlier bytes are kept, see
``changed_stages``, while a changed recipe re-runs what is downstream). A failed stage
stops its descendants, the others go on, and the exit status says what failed. Each stage's DVC
output goes to ``artifacts/logs/<stage>.log``; one line per finished stage goes to stdout.
"""

from __future__ import annotations

import contextlib
import fnmatch
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Mapping, Sequence

from .persisted import LOCK_RETRIES, LOCK_RETRY_S, empty_stale_persisted, inside

LOCK_MESSAGES = ("Unable to acquire lock", "is busy", "LockError")
OTHERS_POLL_S = 5.0  # seconds between looks for an earlier scheduler's stages


@dataclass
class Plan:
    """Stages to run and, for each, the stages it waits for (both by DVC address, e.g. ``train@x``);
    ``forced``: unchanged stages run again because a planned stage reads their absent outputs."""

    order: list[str]
    upstream: dict[str, set[str]] = field(default_factory=dict)
    forced: set[str] = field(default_factory=set)


def stage_graph(root: Path) -> tuple[list[str], dict[str, set[str]]]:
    """Pipeline stages in topological order and, for each, the pipeline stages it depends on."""
    import networkx as nx
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(str(root)) as repo:  # addresses are relative to the cwd
        graph = repo.index.graph  # an edge goes from a stage to a stage it depends on
        stages = {s: s.addressing for s in graph.nodes if getattr(s, "cmd", None)}
        position = {s: i for i, s in enumerate(repo.index.stages)}  # dvc.yaml order, runs as in params.yaml
        ties = nx.lexicographical_topological_sort(graph.reverse(), key=lambda s: position.get(s, -1))
        order = [stages[s] for s in ties if s in stages]
        upstream = {stages[s]: {stages[d] for d in nx.descendants(graph, s) if d in stages} for s in stages}
    return order, upstream


@dataclass
class StageFiles:
    """Each stage's dependency and output paths (relative to the repository root); ``persisted``: the
    stages with ``persist: true`` outputs in DVC's cache (a run's checkpoints; not the git-kept ones)."""

    deps: dict[str, list[str]]
    outs: dict[str, list[str]]
    persisted: set[str] = field(default_factory=set)
    rebuilt_only: set[str] = field(default_factory=set)  # see ``changed_stages``


def changed_stages(root: Path, targets: Sequence[str] = ()) -> tuple[set[str], StageFiles]:
    """Addresses of the stages changed under DVC's ``--allow-missing`` rule (among ``targets``; all if
    none given), and every stage's files.

    Changed: its command, parameters or a present dependency differ from ``dvc.lock``, or a dependency
    is absent and the lock's upstream output differs from what the stage recorded. Not changed: outputs
    or dependencies that are only absent here, and data that was only rebuilt: a stage whose one change
    is data another stage produces, when that stage's recipe (command, parameters, code, and the recipes
    of its own inputs) is the one it had when this stage was recorded (``rebuilt_only``; the same seeded
    code on a fresh machine gives other bytes, CPU float kernels differ, and the finished runs that read
    the earlier bytes are kept, not re-trained; ``files.rebuilt_only`` names them). A running stage
    holds DVC's lock on its outputs, so asking about it, or about a stage that reads them, fails until
    it is recorded: leave those out of ``targets``.
    """
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(str(root)) as repo, repo.lock:  # addresses are relative to the cwd
        stages = [s for s in repo.index.stages if getattr(s, "cmd", None)]
        wanted = set(targets) or {s.addressing for s in stages}
        changed = {s.addressing for s in stages if s.addressing in wanted and s.changed(True, stages)}
        data_changes = {s.addressing: _changed_data(s, stages) for s in stages if s.addressing in changed}
        files = StageFiles({s.addressing: [str(d.def_path) for d in s.deps] for s in stages},
                           {s.addressing: [str(o.def_path) for o in s.outs] for s in stages},
                           {s.addressing for s in stages if any(o.persist and o.use_cache for o in s.outs)})
    from .rebuilt import rebuilt_only

    files.rebuilt_only = rebuilt_only(root, {s: d for s, d in data_changes.items() if d}, files.outs)
    return changed - files.rebuilt_only, files


def _changed_data(stage, stages: list) -> list[str] | None:
    """The dependencies of a changed DVC ``stage`` whose content changed (present and different, or
    absent where an upstream output at that path records another hash: DVC's ``--allow-missing`` rule;
    their producers' recipes decide, see ``rebuilt_only``), or None when something else changed too
    (its command or parameters, an output)."""
    if stage.changed_stage() or stage.changed_outs(allow_missing=True):
        return None
    changed = []
    for dep in stage.deps:
        status = dep.status().get(str(dep))
        if status == "deleted":
            if any(dep.fs_path == out.fs_path and dep.hash_info != out.hash_info for s in stages for out in s.outs):
                changed.append(str(dep.def_path))
        elif status == "modified":
            changed.append(str(dep.def_path))
        elif status:
            return None
    return changed


def _shown(names: list[str], most: int = 6) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def absent_inputs(todo: set[str], files: StageFiles, exists: Callable[[str], bool]) -> set[str]:
    """Stages outside ``todo`` to run again because a stage of ``todo`` (or one of these) reads an
    output of theirs that is absent (``exists`` is False for the dependency path), transitively."""
    producers = {path: stage for stage, outs in files.outs.items() for path in outs}
    forced: set[str] = set()
    queue = list(todo)
    while queue:
        stage = queue.pop()
        for dep in files.deps.get(stage, []):
            if exists(dep):
                continue
            for out, producer in producers.items():
                if (inside(dep, out) or inside(out, dep)) and producer not in todo | forced:
                    forced.add(producer)
                    queue.append(producer)
    return forced


def make_plan(order: list[str], upstream: Mapping[str, set[str]], changed: set[str],
              first: Sequence[str] = (), running: set[str] = frozenset(), forced: set[str] = frozenset(),
              only: Sequence[str] = ()) -> Plan:
    """The changed stages and everything downstream of them, in ``order``.

    ``first``: shell patterns over stage addresses (``train@ax-*-s0``); matching stages move to the
    front, by the first pattern they match, so a finding's runs can be had before the rest. A stage
    still waits for its upstream stages, wherever they are in the order. ``running``: stages an
    earlier scheduler started and that still run; they and everything downstream of them are left out
    (the next plan, once they are recorded, has what remains). ``forced``: unchanged stages to run
    again (see ``absent_inputs``). ``only``: shell patterns; when given, the plan keeps the stages
    matching one of them and the planned stages they need, nothing else (so a sitting's slots are not
    taken by long stages nobody asked for yet).
    """
    todo = with_descendants(order, upstream, changed) - with_descendants(order, upstream, running)
    todo |= forced - with_descendants(order, upstream, running)
    if only:
        todo = keep_only(todo, upstream, only)

    def rank(stage: str) -> int:
        return next((i for i, pat in enumerate(first) if fnmatch.fnmatchcase(stage, pat)), len(first))

    ordered = sorted((s for s in order if s in todo), key=rank)  # stable: ties keep ``order``
    return Plan(ordered, {s: set(upstream.get(s, set())) & todo for s in todo}, forced & todo)


def keep_only(todo: set[str], upstream: Mapping[str, set[str]], only: Sequence[str]) -> set[str]:
    """The stages of ``todo`` matching a pattern of ``only``, and the stages of ``todo`` they need."""
    asked = {s for s in todo if any(fnmatch.fnmatchcase(s, pat) for pat in only)}
    return asked | {u for s in asked for u in upstream.get(s, set())} & todo


def with_descendants(order: list[str], upstream: Mapping[str, set[str]], stages: set[str]) -> set[str]:
    """``stages`` and every stage of ``order`` downstream of one of them (``upstream`` is transitive)."""
    return {s for s in order if s in stages or upstream.get(s, set()) & stages}


Launch = Callable[[str, Path], "subprocess.Popen[bytes]"]


def dvc_command(stage: str, forced: bool) -> list[str]:
    """The ``dvc repro`` of one stage: ``--allow-missing`` (absent data alone is no change), ``-f`` when
    it is run again for outputs a planned stage needs."""
    return ["dvc", "repro", "--single-item", "--allow-missing", *(["--force"] if forced else []), stage]


def dvc_launcher(root: Path, forced: set[str] = frozenset(), again: set[str] = frozenset(),
                 echo: Callable[[str], None] = print, persisted: set[str] = frozenset()) -> Launch:
    """Starts ``dvc_command(stage)`` in ``root``, its output appended to the log; first, for a stage of
    ``persisted``, empties its persisted outputs if they are stale (``empty_stale_persisted``) or the
    stage is in ``again``."""
    checked: set[str] = set()  # a stage started again after a busy lock is checked once

    def launch(stage: str, log: Path) -> "subprocess.Popen[bytes]":
        log.parent.mkdir(parents=True, exist_ok=True)
        if stage in persisted and stage not in checked:
            checked.add(stage)
            if line := empty_stale_persisted(root, stage, stage in again):
                echo(line)
                with open(log, "a") as fh:
                    fh.write(line + "\n")
        with open(log, "ab") as fh:
            return subprocess.Popen(dvc_command(stage, stage in forced), cwd=root, stdout=fh,
                                    stderr=subprocess.STDOUT)
    return launch


def _lock_failure(log: Path, start: int) -> bool:
    with open(log, "rb") as fh:
        fh.seek(start)
        text = fh.read().decode(errors="replace")
    return any(m in text for m in LOCK_MESSAGES)


def run_plan(plan: Plan, jobs: int, log_dir: Path, launch: Launch, echo: Callable[[str], None] = print,
             deadline: float | None = None, expected_s: Mapping[str, float] | None = None,
             clock: Callable[[], float] = time.time, others: Callable[[], int] = lambda: 0,
             alone: Collection[str] = frozenset()) -> dict[str, str]:
    """Run ``plan`` with up to ``jobs`` stages at once.

    Returns ``{stage: "ok" | "failed" | "skipped" | "deferred"}``. With a ``deadline`` (a ``clock()``
    time), a stage is started only if ``expected_s[stage]`` seconds from now end before it; one that
    does not fit is deferred (left for the next sitting) and a later one that fits starts in its place.
    A stage with no expected duration fits until the deadline itself has passed. What depends on a
    deferred stage is deferred too.
    ``others()``: how many stages outside this plan still run (an earlier scheduler's); they count
    against ``jobs`` (asked every few seconds).
    ``alone``: stages that run with no other stage beside them (``alone_stages``). One that is next in
    the plan's order waits for the running stages to end (nothing later starts in its place, so the
    order holds), and nothing starts while it runs.
    """
    if jobs < 1:
        raise ValueError(f"jobs={jobs}: must be >= 1")
    expected_s = expected_s or {}
    status: dict[str, str] = {}
    running: dict[str, tuple[subprocess.Popen, Path, int, float, int]] = {}
    waiting = list(plan.order)
    busy_elsewhere, asked = others(), time.perf_counter()
    while waiting or running:
        if busy_elsewhere and time.perf_counter() - asked > OTHERS_POLL_S:
            busy_elsewhere, asked = others(), time.perf_counter()
        for stage in [s for s in waiting if plan.upstream.get(s, set()) & {k for k, v in status.items() if v != "ok"}]:
            waiting.remove(stage)
            deferred = plan.upstream.get(stage, set()) & {k for k, v in status.items() if v == "deferred"}
            status[stage] = "deferred" if deferred else "skipped"
            echo(f"deferred {stage} (waits for {sorted(deferred)[0]})" if deferred
                 else f"skipped  {stage} (an upstream stage failed)")
        ready = [s for s in waiting if plan.upstream.get(s, set()) <= {k for k, v in status.items() if v == "ok"}]
        if deadline is not None:
            for stage in [s for s in ready if clock() + expected_s.get(s, 0.0) > deadline]:
                ready.remove(stage)
                waiting.remove(stage)
                status[stage] = "deferred"
                echo(f"deferred {stage} (expected {expected_s[stage] / 60:.0f} min, more than is left before the deadline)"
                     if stage in expected_s else f"deferred {stage} (the deadline has passed)")
        for stage in ready:
            if len(running) + busy_elsewhere >= jobs or any(s in alone for s in running):
                break
            if stage in alone and (running or busy_elsewhere):
                break  # waits for the running stages; nothing later starts in its place
            waiting.remove(stage)
            log = log_dir / f"{stage.replace('@', '--')}.log"
            start = log.stat().st_size if log.exists() else 0
            running[stage] = (launch(stage, log), log, start, time.perf_counter(), 0)
        time.sleep(0.2 if running or busy_elsewhere else 0)
        for stage, (proc, log, start, t0, tries) in list(running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del running[stage]
            if rc != 0 and tries < LOCK_RETRIES and _lock_failure(log, start):
                time.sleep(LOCK_RETRY_S)  # DVC's repository lock was busy: start again
                running[stage] = (launch(stage, log), log, log.stat().st_size, t0, tries + 1)
                continue
            status[stage] = "ok" if rc == 0 else "failed"
            done = sum(v == "ok" for v in status.values())
            echo(f"{status[stage]:8s} {stage} in {time.perf_counter() - t0:.0f} s "
                 f"[{done}/{len(plan.order)} done, {len(running)} running]" + ("" if rc == 0 else f"; log: {log}"))
    return status


def alone_stages(root: Path) -> set[str]:
    """The LIBERO runs' stages (``train@<run>`` whose suite is LIBERO): ``run_plan`` runs each alone.

    Measured on 2 cores (2026-12-07): a LIBERO run's closed-loop evaluation steps two simulator
    processes in lockstep with the policy, so two such runs side by side evaluated about 2 episodes a
    minute each (4 in all) where one alone evaluated 8, and trained 3000 steps in about 16 min each where
    one alone took about 7.5: running them one at a time finishes more runs per hour."""
    from .progress import ALONE_BENCHMARK, run_progress

    if not (Path(root) / "params.yaml").is_file():  # a pipeline without the study's run matrix
        return set()
    return {f"train@{s.name}" for s in run_progress(root) if s.benchmark == ALONE_BENCHMARK}


def stages_running(root: Path, proc: Path = Path("/proc")) -> dict[int, str]:
    """``{pid: stage}`` of ``dvc repro --single-item <stage>`` processes already running in ``root``.

    A stopped scheduler leaves its stages running; a second scheduler must not start them again.
    """
    found = {}
    for entry in proc.glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            cwd = Path(entry / "cwd").resolve()
        except OSError:  # gone, or not ours to read
            continue
        if "--single-item" in argv and "repro" in argv and cwd == root.resolve():
            found[int(entry.name)] = [a for a in argv if a][-1]  # the stage is the last argument (dvc_command)
    return found


def parallel_repro(root: Path, jobs: int, first: Sequence[str] = (), deadline: float | None = None,
                   only: Sequence[str] = (), again: Sequence[str] = ()) -> int:
    """Reproduce every changed stage of the pipeline at ``root``, ``jobs`` at a time; 0 when none failed.

    ``first``: patterns of stages to run before the others; ``only``: patterns of the stages to run at
    all, with what they need (see ``make_plan``); ``again``: patterns of stages to run from scratch even
    if unchanged (their persisted outputs emptied, then ``dvc repro -f``: after a code fix that should
    re-train finished runs). ``deadline`` (epoch
    seconds): start only the runs expected to finish before it (``progress.expected_stage_seconds``:
    the median finished run of the same benchmark with as many evaluation passes), so a sitting that ends then does not leave a run
    killed half-way through its evaluation, which restarts from scratch.
    """
    busy = set(stages_running(root).values())
    order, upstream = stage_graph(root)
    for option, patterns in (("--first", first), ("--only", only), ("--again", again)):
        unknown = [pat for pat in patterns if not any(fnmatch.fnmatchcase(s, pat) for s in order)]
        if unknown:
            raise ValueError(f"{option} {unknown}: match no stage of dvc.yaml; stages look like {order[:3]}")
    held = with_descendants(order, upstream, busy)
    changed, files = changed_stages(root, [s for s in order if s not in held] if busy else ())
    kept = files.rebuilt_only - with_descendants(order, upstream, changed)
    if kept:
        print(f"{len(kept)} finished stages read data rebuilt here from the same recipe (other bytes): kept, "
              f"not run again (--again re-runs them): {_shown(sorted(kept))}", flush=True)
    redo = {s for s in order if any(fnmatch.fnmatchcase(s, pat) for pat in again)}
    if redo & held:
        raise ValueError(f"--again {sorted(redo & held)}: still running (or waiting for a running stage); "
                         f"wait for them to finish")
    changed |= redo
    only = [*only, *again] if only else []  # --only narrows the plan; what --again names stays in it
    todo = with_descendants(order, upstream, changed) - held
    if only:  # restore only what the asked-for stages read
        todo = keep_only(todo, upstream, only)
    forced = absent_inputs(todo, files, lambda path: (root / path).exists()) | redo
    plan = make_plan(order, upstream, changed, first, running=busy, forced=forced, only=only)
    if plan.forced - redo:
        print(f"run again for outputs absent here that planned stages read: {sorted(plan.forced - redo)}",
              flush=True)
    if busy:  # a stopped scheduler's stages: never started twice, and what needs them waits for the next plan
        print(f"still running from an earlier `vlm4vla repro`, left out with what depends on them: {sorted(busy)}",
              flush=True)
    print(f"{len(plan.order)} of {len(order)} stages to run, {jobs} at a time; logs in artifacts/logs/", flush=True)
    alone = alone_stages(root)
    if jobs > 1 and alone & set(plan.order):
        print(f"{len(alone & set(plan.order))} LIBERO runs in the plan: each runs alone (two side by side take more "
              "than twice as long)", flush=True)
    expected = None
    if deadline is not None:
        from .progress import expected_stage_seconds, run_progress

        expected = expected_stage_seconds(run_progress(root))
    def echo(line: str) -> None:
        print(line, flush=True)

    status = run_plan(plan, jobs, root / "artifacts" / "logs", dvc_launcher(root, plan.forced, redo, echo, files.persisted), echo=echo,
                      deadline=deadline, expected_s=expected, alone=alone,
                      others=lambda: len(busy & set(stages_running(root).values())))
    deferred = sorted(s for s, v in status.items() if v == "deferred")
    if deferred:
        print(f"{len(deferred)} stages deferred to the next `vlm4vla repro` (they would not finish before "
              f"{time.strftime('%H:%M', time.localtime(deadline))})", flush=True)
    bad = sorted(s for s, v in status.items() if v in ("failed", "skipped"))
    if bad:
        print(f"not reproduced: {bad}", file=sys.stderr)
    return 1 if bad else 0
