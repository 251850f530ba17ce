"""The parallel stage scheduler: plan from the stage graph, order, concurrency, failures, busy locks.

Stages are fake processes (a Python one-liner) that log their start and end, so the test sees the
schedule the real `dvc repro --single-item` calls would get.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vlm4vla.pipeline.schedule import Plan, dvc_command, make_plan, run_plan, stages_running

# a -> b -> d, a -> c -> d, e independent
ORDER = ["a", "b", "c", "e", "d"]
UPSTREAM = {"a": set(), "b": {"a"}, "c": {"a"}, "d": {"a", "b", "c"}, "e": set()}


def fake_launcher(tmp_path: Path, fail: set[str] = frozenset(), busy_once: set[str] = frozenset()):
    events = tmp_path / "events.txt"

    def launch(stage: str, log: Path) -> subprocess.Popen:
        log.parent.mkdir(parents=True, exist_ok=True)
        marker = tmp_path / f"{stage}.tried"
        busy = stage in busy_once and not marker.exists()
        marker.touch()
        code = (f"import time; open({str(events)!r}, 'a').write('start {stage}\\n'); time.sleep(0.3); "
                f"print({'ERROR: Unable to acquire lock' if busy else 'done'!r}); "
                f"open({str(events)!r}, 'a').write('end {stage}\\n'); raise SystemExit({int(busy or stage in fail)})")
        with open(log, "ab") as fh:
            return subprocess.Popen([sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT)

    return launch, events


def _events(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1]


def test_plan_is_the_changed_stages_and_their_descendants() -> None:
    plan = make_plan(ORDER, UPSTREAM, changed={"b"})
    assert plan.order == ["b", "d"]
    assert plan.upstream == {"b": set(), "d": {"b"}}  # a did not change: nothing to wait for
    assert make_plan(ORDER, UPSTREAM, changed=set()).order == []


def test_upstream_first_and_at_most_jobs_at_once(tmp_path: Path) -> None:
    launch, events = fake_launcher(tmp_path)
    status = run_plan(Plan(ORDER, UPSTREAM), 2, tmp_path / "logs", launch, echo=lambda s: None)
    assert status == dict.fromkeys(ORDER, "ok")
    log = _events(events)
    for stage, ups in UPSTREAM.items():
        for up in ups:
            assert log.index(f"end {up}") < log.index(f"start {stage}"), (up, stage, log)
    running, peak = 0, 0
    for e in log:
        running += 1 if e.startswith("start") else -1
        peak = max(peak, running)
    assert peak == 2  # b and c (or a and e) overlap, never three


def test_a_failed_stage_skips_its_descendants_only(tmp_path: Path) -> None:
    launch, events = fake_launcher(tmp_path, fail={"b"})
    lines: list[str] = []
    status = run_plan(Plan(ORDER, UPSTREAM), 2, tmp_path / "logs", launch, echo=lines.append)
    assert status == {"a": "ok", "b": "failed", "c": "ok", "e": "ok", "d": "skipped"}
    assert "start d" not in _events(events)
    assert any(line.startswith("failed") and "log:" in line for line in lines)


def test_a_stage_that_runs_alone_never_overlaps_another_and_keeps_its_place(tmp_path: Path) -> None:
    launch, events = fake_launcher(tmp_path)
    # e (alone) comes before d in the order; with 2 slots, b and c overlap but nothing overlaps e
    status = run_plan(Plan(ORDER, UPSTREAM), 2, tmp_path / "logs", launch, echo=lambda s: None, alone={"e"})
    assert status == dict.fromkeys(ORDER, "ok")
    log = _events(events)
    start, end = log.index("start e"), log.index("end e")
    assert end == start + 1, log  # nothing started or ended while e ran
    assert log.index("start d") > end  # d, later in the order, did not start in e's place
    running, peak = 0, 0
    for e in log:
        running += 1 if e.startswith("start") else -1
        peak = max(peak, running)
    assert peak == 2  # the other stages still share the 2 slots


def test_the_libero_runs_are_the_stages_that_run_alone(tmp_path: Path) -> None:
    from vlm4vla.pipeline.schedule import alone_stages

    runs = {"bb-a-s0": {"run": {"seed": 0}}, "lb-a-s0": {"run": {"seed": 0}, "suite": {"benchmark": "libero"}},
            "fz-libero-a-freeze_vision-s0": {"run": {"seed": 0}, "suite": {"benchmark": "libero"}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"runs": runs}))
    assert alone_stages(tmp_path) == {"train@lb-a-s0", "train@fz-libero-a-freeze_vision-s0"}
    assert alone_stages(tmp_path / "elsewhere") == set()  # no params.yaml: no run matrix, nothing alone


def test_a_busy_dvc_lock_is_retried(tmp_path: Path) -> None:
    launch, events = fake_launcher(tmp_path, busy_once={"a"})
    status = run_plan(Plan(["a", "b"], {"a": set(), "b": {"a"}}), 1, tmp_path / "logs", launch, echo=lambda s: None)
    assert status == {"a": "ok", "b": "ok"}
    assert _events(events).count("start a") == 2


def test_jobs_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="jobs=0"):
        run_plan(Plan([], {}), 0, tmp_path, fake_launcher(tmp_path)[0])


def test_first_patterns_move_stages_forward_but_upstream_still_runs_before(tmp_path: Path) -> None:
    plan = make_plan(ORDER, UPSTREAM, changed={"a", "e"}, first=["d", "e"])
    assert plan.order == ["d", "e", "a", "b", "c"]
    launch, events = fake_launcher(tmp_path)
    assert set(run_plan(plan, jobs=1, log_dir=tmp_path / "logs", launch=launch, echo=lambda s: None).values()) == {"ok"}
    starts = [e.split()[1] for e in _events(events) if e.startswith("start")]
    assert starts == ["e", "a", "b", "c", "d"]  # d asked first, but it waits for a, b and c


def test_only_patterns_keep_the_asked_stages_and_what_they_need() -> None:
    plan = make_plan(ORDER, UPSTREAM, changed={"a", "e"}, only=["b"])
    assert plan.order == ["a", "b"]  # c, d and e are planned without --only, and wait now
    assert plan.upstream == {"a": set(), "b": {"a"}}
    forced = make_plan(ORDER, UPSTREAM, changed={"b", "c"}, forced={"a"}, only=["c"])
    assert forced.order == ["a", "c"] and forced.forced == {"a"}  # a restored for c; b is not asked for
    assert make_plan(ORDER, UPSTREAM, changed={"e"}, only=["b"]).order == []  # b unchanged: nothing to do


def test_first_patterns_rank_by_the_first_pattern_matched() -> None:
    order = ["train@bb-x-s0", "train@ax-y-s0", "train@ax-y-s1", "train@lb-z-s0", "report"]
    upstream = {s: set() for s in order}
    plan = make_plan(order, upstream, changed=set(order), first=["train@ax-*-s1", "train@*-s0"])
    assert plan.order == ["train@ax-y-s1", "train@bb-x-s0", "train@ax-y-s0", "train@lb-z-s0", "report"]


def test_stages_still_running_in_the_repository_are_found(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    argv = [sys.executable, "-c", "import time; time.sleep(30)", *dvc_command("train@x", forced=True)[1:-1]]
    mine = subprocess.Popen([*argv, "train@x"], cwd=tmp_path)
    elsewhere = subprocess.Popen([*argv, "train@y"], cwd=other)
    try:
        assert stages_running(tmp_path) == {mine.pid: "train@x"}
    finally:
        mine.kill()
        elsewhere.kill()
        mine.wait()
        elsewhere.wait()
    assert stages_running(tmp_path) == {}


class FakeClock:
    """``time.time`` for run_plan: starts at 0 and moves on only when the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_deadline_defers_the_runs_that_would_not_finish_and_starts_shorter_ones(tmp_path: Path) -> None:
    # long (LIBERO-like) expected 3000 s, short ones 1000 s, report has no estimate; 1500 s left
    order = ["long", "short1", "after_long", "short2", "report"]
    upstream = {"long": set(), "short1": set(), "after_long": {"long"}, "short2": set(),
                "report": {"short1", "short2"}}
    launch, events = fake_launcher(tmp_path)
    lines: list[str] = []
    status = run_plan(Plan(order, upstream), 1, tmp_path / "logs", launch, echo=lines.append, deadline=1500.0,
                      expected_s={"long": 3000.0, "short1": 1000.0, "short2": 1000.0, "after_long": 10.0},
                      clock=FakeClock())
    assert status == {"long": "deferred", "after_long": "deferred", "short1": "ok", "short2": "ok", "report": "ok"}
    starts = [e.split()[1] for e in _events(events) if e.startswith("start")]
    assert starts == ["short1", "short2", "report"]
    assert any(line.startswith("deferred long (expected 50 min") for line in lines), lines
    assert "deferred after_long (waits for long)" in lines


def test_the_deadline_is_checked_when_a_stage_would_start_not_when_planned(tmp_path: Path) -> None:
    clock = FakeClock()
    launch, events = fake_launcher(tmp_path)

    def late_launch(stage: str, log: Path) -> subprocess.Popen:
        clock.now += 600.0  # each stage uses 10 minutes of the clock
        return launch(stage, log)

    status = run_plan(Plan(["a", "b", "c"], {}), 1, tmp_path / "logs", late_launch, echo=lambda s: None,
                      deadline=1000.0, expected_s=dict.fromkeys("abc", 300.0), clock=clock)
    # a starts at 0 (ends 900 expected), b at 600 (900 <= 1000), c at 1200: past the deadline
    assert status == {"a": "ok", "b": "ok", "c": "deferred"}
    assert _events(events) == ["start a", "end a", "start b", "end b"]


def test_stages_an_earlier_scheduler_still_runs_are_left_out_with_their_descendants() -> None:
    plan = make_plan(ORDER, UPSTREAM, changed={"b", "c", "e"}, running={"b"})
    assert plan.order == ["c", "e"]  # b runs elsewhere; d needs b, so it waits for the next plan
    assert plan.upstream == {"c": set(), "e": set()}


def test_stages_running_elsewhere_count_against_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vlm4vla.pipeline.schedule as schedule

    monkeypatch.setattr(schedule, "OTHERS_POLL_S", 0.0)
    launch, events = fake_launcher(tmp_path)
    # an earlier stage holds one of the 2 slots until a has ended (then it ends too)
    def elsewhere() -> int:
        return int(not events.exists() or "end a" not in _events(events))

    status = run_plan(Plan(["a", "b"], {}), 2, tmp_path / "logs", launch, echo=lambda s: None, others=elsewhere)
    assert status == {"a": "ok", "b": "ok"}
    assert _events(events) == ["start a", "end a", "start b", "end b"]  # one slot free: no overlap


def test_after_the_deadline_a_stage_without_an_estimate_is_deferred_too(tmp_path: Path) -> None:
    clock = FakeClock()
    clock.now = 2000.0  # past the deadline before anything starts
    launch, events = fake_launcher(tmp_path)
    lines: list[str] = []
    status = run_plan(Plan(["report"], {}), 1, tmp_path / "logs", launch, echo=lines.append, deadline=1000.0,
                      expected_s={}, clock=clock)
    assert status == {"report": "deferred"}
    assert lines == ["deferred report (the deadline has passed)"]
    assert not events.exists()


def _lock(code: str, big: str, read: str) -> str:
    import yaml

    return yaml.safe_dump({"schema": "2.0", "stages": {
        "up": {"cmd": "make big", "deps": [{"path": "up.py", "md5": code}], "outs": [{"path": "big", "md5": big}]},
        "train@r1": {"cmd": "train", "deps": [{"path": "big/x", "md5": read}], "outs": [{"path": "ck", "md5": "c"}]}}})


@pytest.mark.parametrize("edit_gave", ["the same bytes", "other bytes"])
def test_finished_stage_is_kept_only_if_its_data_came_from_todays_recipe(tmp_path: Path, edit_gave: str) -> None:
    """r1 read up's output X made by code c1. up.py was then edited (c2): if that gave back X, r1 read
    what c2 makes, and a rebuild with c2 that gives other bytes (Y) leaves r1 finished; if the edit gave
    other bytes (Z) and r1 was never re-run, r1 read c1's data, so it must run again."""
    from vlm4vla.pipeline.rebuilt import rebuilt_only

    def commit(text: str) -> None:
        (tmp_path / "dvc.lock").write_text(text)
        subprocess.run(["git", "add", "dvc.lock"], cwd=tmp_path, check=True)
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "lock"], cwd=tmp_path,
                       check=True)

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    commit(_lock("c1", "X.dir", "x1"))
    commit(_lock("c2", "X.dir" if edit_gave == "the same bytes" else "Z.dir", "x1"))
    (tmp_path / "dvc.lock").write_text(_lock("c2", "Y.dir", "x1"))  # rebuilt here from c2: other bytes
    outputs = {"up": ["big"], "train@r1": ["ck"]}
    kept = rebuilt_only(tmp_path, {"train@r1": ["big/x"]}, outputs)
    assert kept == ({"train@r1"} if edit_gave == "the same bytes" else set())
    assert rebuilt_only(tmp_path, {"train@r1": ["elsewhere"]}, outputs) == set()  # data no stage makes: a real change
