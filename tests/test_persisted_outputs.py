"""Persisted outputs (a run's checkpoints, ``persist: true``) follow the data they were made from.

A toy pipeline with the study's shape, run with the real DVC through ``vlm4vla repro``'s scheduler: an
upstream stage builds a "backbone" from a seed file; a "train" stage resumes from its persisted
checkpoint when one is there (as ``02-train-policy`` does: a finished run is not trained again) and
publishes what the checkpoint holds. Rebuilding the backbone with other bytes at the same path must
train afresh; a code edit must resume; so must a run killed before it ever finished. A persisted
output kept in git (``cache: false``: results with their own keys, such as probes of policies trained
on other machines) is never emptied.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vlm4vla.pipeline.persisted import empty_stale_persisted, stale_persisted
from vlm4vla.pipeline.schedule import parallel_repro

BIN = Path(sys.executable).parent

DVC_YAML = """
stages:
  up:
    cmd: mkdir -p backbone && cp seed.txt backbone/w
    deps: [seed.txt]
    outs: [backbone]
  train:
    cmd: mkdir -p ck && (test -f ck/m || cat backbone/w untracked.txt > ck/m) && cp ck/m result.txt
    deps: [backbone, code.py]
    outs:
      - ck: {persist: true}
      - result.txt: {cache: false}
  probes:
    cmd: mkdir -p kept && (test -f kept/old || echo measured elsewhere > kept/old) && cp backbone/w kept/new
    deps: [backbone]
    outs:
      - kept: {persist: true, cache: false}
"""


def _sh(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PATH", f"{BIN}:{os.environ['PATH']}")  # the scheduler starts `dvc` processes
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        _sh(cmd, tmp_path)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "seed.txt").write_text("backbone v1\n")
    (tmp_path / "code.py").write_text("# v1\n")
    (tmp_path / "untracked.txt").write_text("")  # read by training, unknown to DVC: stands for a fix DVC cannot see
    assert parallel_repro(tmp_path, jobs=1) == 0
    assert (tmp_path / "result.txt").read_text() == "backbone v1\n"
    return tmp_path


def test_a_rebuilt_upstream_input_trains_the_persisted_run_afresh(repo: Path, capsys: pytest.CaptureFixture) -> None:
    (repo / "seed.txt").write_text("backbone v2\n")
    assert parallel_repro(repo, jobs=1) == 0
    assert (repo / "result.txt").read_text() == "backbone v2\n"  # not the checkpoint of backbone v1
    assert "fresh    train: backbone changed" in capsys.readouterr().out


def test_a_code_edit_resumes_the_persisted_run(repo: Path) -> None:
    (repo / "code.py").write_text("# v2, a refactor\n")
    assert stale_persisted(repo, "train") == ([], [])
    assert parallel_repro(repo, jobs=1) == 0
    assert (repo / "result.txt").read_text() == "backbone v1\n"  # resumed: the checkpoint was kept


def test_a_run_that_never_finished_keeps_its_checkpoint(tmp_path: Path, repo: Path) -> None:
    (repo / "dvc.lock").unlink()  # as after a run killed before its first finish: no hashes recorded
    (repo / "ck" / "m").write_text("half-trained\n")
    assert stale_persisted(repo, "train") == ([], [])
    assert parallel_repro(repo, jobs=1) == 0
    assert (repo / "result.txt").read_text() == "half-trained\n"


def test_a_run_killed_after_a_rebuild_resumes_from_the_rebuilt_data(repo: Path, capsys: pytest.CaptureFixture) -> None:
    # dvc.lock says the run last finished on backbone v1; since then the backbone was rebuilt and the
    # run was started on it (its checkpoint emptied, the new data recorded) and killed half-way.
    (repo / "seed.txt").write_text("backbone v2\n")
    _sh(["dvc", "repro", "--single-item", "up"], repo)
    assert "backbone changed" in empty_stale_persisted(repo, "train")
    (repo / "ck").mkdir(exist_ok=True)
    (repo / "ck" / "m").write_text("half-trained on v2\n")
    assert stale_persisted(repo, "train") == ([], [])  # made from what is there now, whatever the lock says
    assert parallel_repro(repo, jobs=1) == 0
    assert (repo / "result.txt").read_text() == "half-trained on v2\n"  # resumed, not trained afresh
    assert "fresh" not in capsys.readouterr().out


def test_again_runs_an_unchanged_stage_from_scratch(repo: Path, capsys: pytest.CaptureFixture) -> None:
    (repo / "untracked.txt").write_text("fixed\n")
    assert parallel_repro(repo, jobs=1) == 0  # unchanged for DVC: not run
    assert (repo / "result.txt").read_text() == "backbone v1\n"
    assert parallel_repro(repo, jobs=1, again=["train"]) == 0
    assert "fresh    train: named by --again; emptied ck" in capsys.readouterr().out
    assert (repo / "result.txt").read_text() == "backbone v1\nfixed\n"  # trained again, not resumed


def test_again_names_a_stage_that_exists(repo: Path) -> None:
    with pytest.raises(ValueError, match=r"--again \['trian'\]: match no stage"):
        parallel_repro(repo, jobs=1, again=["trian"])


def test_a_persisted_output_kept_in_git_is_never_emptied(repo: Path, capsys: pytest.CaptureFixture) -> None:
    (repo / "kept" / "old").write_text("measured where that policy was trained\n")
    (repo / "seed.txt").write_text("backbone v2\n")
    assert stale_persisted(repo, "probes") == ([], [])
    assert parallel_repro(repo, jobs=1) == 0
    assert (repo / "kept" / "old").read_text() == "measured where that policy was trained\n"
    assert (repo / "kept" / "new").read_text() == "backbone v2\n"
    assert "fresh    probes" not in capsys.readouterr().out
