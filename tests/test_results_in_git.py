"""Results in git: a fresh clone with dvc.lock and the git-kept results, but no DVC cache, plans nothing
already done; a new run restores the absent upstream outputs it reads first (``vlm4vla repro``).

A toy pipeline with the study's shape (an upstream stage with a large cached output, a foreach of
runs with a cached checkpoint and git-kept results, an analysis reading the results), run with the real
DVC, so the test sees what `vlm4vla repro` does on a fresh machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vlm4vla.pipeline.schedule import StageFiles, absent_inputs, changed_stages, dvc_command, parallel_repro
from vlm4vla.train.results import publish_results

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
LOG = "stages.log"  # outside the pipeline's files: each stage appends its name when it really runs

DVC_YAML = """
stages:
  up:
    cmd: mkdir -p big && cp seed.txt big/x{stamp} && echo up >> ../{log}
    deps: [seed.txt]
    outs: [big]
  train:
    foreach: {runs}
    do:
      cmd: mkdir -p ck/${{item}} res/${{item}} && cat big/x > ck/${{item}}/m && cat big/x > res/${{item}}/r && echo train-${{item}} >> ../{log}
      deps: [big]
      outs:
        - ck/${{item}}: {{persist: true}}
        - res/${{item}}: {{cache: false}}
  report:
    cmd: cat res/*/r > report.txt && echo report >> ../{log}
    deps: [res]
    outs: [report.txt: {{cache: false}}]
"""


def _sh(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done.stdout


# an upstream stage that gives other bytes each time it runs, as the zoo and the demonstrations do on another machine
STAMP = " && date +%s%N > big/stamp"


def _pipeline(path: Path, runs: list[str], stamp: str = "") -> None:
    (path / "dvc.yaml").write_text(DVC_YAML.format(runs=runs, log=LOG, stamp=stamp))


@pytest.fixture(autouse=True)
def dvc_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{BIN}:{os.environ['PATH']}")  # the scheduler starts `dvc` processes


@pytest.fixture(params=[""], ids=["deterministic"])
def trained(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A repository that ran the toy pipeline with two runs and committed what git keeps."""
    stamp = request.param
    repo = tmp_path / "trained"
    repo.mkdir()
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        _sh(cmd, repo)
    (repo / "seed.txt").write_text("weights\n")
    (repo / ".gitignore").write_text("/big\n/ck\n")
    _pipeline(repo, ["r1", "r2"], stamp)
    _sh(["dvc", "repro", "-q"], repo)
    _sh(["git", "add", "-A"], repo)
    _sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "two runs"], repo)
    (tmp_path / LOG).unlink()
    return repo


def _fresh_clone(repo: Path) -> Path:
    clone = repo.parent / "fresh"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    assert not (clone / "big").exists() and (clone / "res/r1/r").is_file()  # results came with git, data did not
    return clone


def test_a_fresh_clone_plans_nothing_that_is_done(trained: Path) -> None:
    clone = _fresh_clone(trained)
    changed, _ = changed_stages(clone)
    assert changed == set()
    assert parallel_repro(clone, jobs=1) == 0
    assert not (clone.parent / LOG).exists()  # no stage ran


def test_a_new_run_restores_the_absent_upstream_output_first(trained: Path) -> None:
    clone = _fresh_clone(trained)
    _pipeline(clone, ["r1", "r2", "r3"])
    changed, files = changed_stages(clone)
    assert changed == {"train@r3"}
    assert absent_inputs({"train@r3", "report"}, files, lambda p: (clone / p).exists()) == {"up"}
    assert parallel_repro(clone, jobs=2) == 0
    ran = (clone.parent / LOG).read_text().split()
    assert ran == ["up", "train-r3", "report"]  # r1 and r2 are not trained again: up gave back the same data
    assert (clone / "report.txt").read_text() == "weights\n" * 3
    assert changed_stages(clone)[0] == set()


@pytest.mark.parametrize("trained", [STAMP], ids=["rebuilt-with-other-bytes"], indirect=True)
def test_finished_runs_are_kept_when_their_data_is_rebuilt_with_other_bytes(trained: Path) -> None:
    """A fresh machine rebuilds the upstream data for a new run from the same recipe, with other bytes:
    the finished runs read the earlier bytes and are kept (not re-trained), then and in the next plan,
    and the plan says so; a changed recipe still re-runs them."""
    clone = _fresh_clone(trained)
    _pipeline(clone, ["r1", "r2", "r3"], STAMP)
    assert parallel_repro(clone, jobs=2) == 0
    assert (clone.parent / LOG).read_text().split() == ["up", "train-r3", "report"]
    changed, files = changed_stages(clone)  # up's output differs from what r1 and r2 recorded
    assert changed == set() and files.rebuilt_only == {"train@r1", "train@r2"}
    assert parallel_repro(clone, jobs=2) == 0
    assert (clone.parent / LOG).read_text().split() == ["up", "train-r3", "report"]  # nothing ran again
    (clone / "seed.txt").write_text("other weights\n")  # the recipe changed: now every run reads other data
    assert changed_stages(clone)[0] == {"up"}
    assert parallel_repro(clone, jobs=2) == 0
    ran = (clone.parent / LOG).read_text().split()[3:]
    assert ran[0] == "up" and sorted(ran[1:4]) == ["train-r1", "train-r2", "train-r3"] and ran[4] == "report"


def test_a_changed_upstream_output_changes_the_runs_that_read_it(trained: Path) -> None:
    clone = _fresh_clone(trained)
    (clone / "seed.txt").write_text("other weights\n")
    changed, _ = changed_stages(clone)
    assert changed == {"up"}  # the runs follow as its descendants in the plan
    assert parallel_repro(clone, jobs=2) == 0
    assert sorted((clone.parent / LOG).read_text().split()) == ["report", "train-r1", "train-r2", "up"]


def test_absent_inputs_follow_producers_transitively_and_skip_present_files() -> None:
    files = StageFiles(deps={"zoo": [], "demos": [], "aux": ["artifacts/zoo"],
                             "train@a": ["artifacts/auxiliary-vlms/a", "artifacts/demonstrations"],
                             "report": ["artifacts/run-results"]},
                       outs={"zoo": ["artifacts/zoo"], "demos": ["artifacts/demonstrations"],
                             "aux": ["artifacts/auxiliary-vlms"], "train@a": ["artifacts/runs/a", "artifacts/run-results/a"],
                             "report": []})
    present = {"artifacts/demonstrations", "artifacts/run-results"}
    assert absent_inputs({"train@a", "report"}, files, lambda p: p in present) == {"aux", "zoo"}
    assert absent_inputs({"report"}, files, lambda p: p in present) == set()


def test_stages_run_with_allow_missing_and_restores_forced() -> None:
    assert dvc_command("train@a", forced=False) == ["dvc", "repro", "--single-item", "--allow-missing", "train@a"]
    assert dvc_command("zoo", forced=True)[-2:] == ["--force", "zoo"]


def test_publish_results_copies_the_small_files_and_replaces_old_ones_whole(tmp_path: Path) -> None:
    run, results = tmp_path / "runs/x", tmp_path / "run-results/x"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="eval_results.json"):
        publish_results(run, results)
    (run / "eval_results.json").write_text("{}")
    (run / "history.csv").write_text("step\n1\n")
    (run / "checkpoints/model.safetensors").write_text("big")
    results.mkdir(parents=True)
    (results / "stale.json").write_text("old")
    assert publish_results(run, results) == ["eval_results.json", "history.csv"]
    assert sorted(p.name for p in results.iterdir()) == ["eval_results.json", "history.csv"]
    assert sorted(p.name for p in results.parent.iterdir()) == ["x"]  # no temporary folder left


def _study_outs() -> list[tuple[str, bool]]:
    """(path, cached) of every output of the study's dvc.yaml, foreach keys written as a sample run name."""
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    found = []
    for stage in stages.values():
        body = stage.get("do", stage)
        for out in [*body.get("outs", []), *body.get("metrics", [])]:
            path, flags = next(iter(out.items())) if isinstance(out, dict) else (out, {})
            found.append((path.replace("${key}", "bb-example-s0"), flags.get("cache", True)))
    return found


def test_every_uncached_output_of_the_study_is_kept_by_git() -> None:
    """A `cache: false` output exists only where it was made unless git keeps it (the fresh-clone promise)."""
    uncached = [path for path, cached in _study_outs() if not cached]
    assert "reports/03-backbones.html" in uncached and "artifacts/run-results/bb-example-s0" in uncached
    # A folder output that does not exist yet is matched as a file: ask for a path inside it too.
    ignored = set(subprocess.run(["git", "check-ignore", "--no-index", *uncached, *(f"{p}/x" for p in uncached)],
                                 cwd=ROOT, capture_output=True, text=True).stdout.split())
    hidden = [p for p in uncached if p in ignored and f"{p}/x" in ignored]
    assert hidden == [], f"cache: false outputs that .gitignore hides: {hidden}"


def test_every_stage_report_is_in_git_and_per_run_reports_are_not() -> None:
    """Finding and stage reports are readable on a fresh clone; the 114 per-run pages stay in DVC's cache."""
    reports = dict((path, cached) for path, cached in _study_outs() if path.startswith("reports/"))
    assert {p for p, cached in reports.items() if cached} == {"reports/runs/bb-example-s0.html"}
