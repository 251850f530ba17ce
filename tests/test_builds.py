"""The record of zoo builds (analysis/builds.py): each run is compared with the probe of the build it
trained on, and a rebuild is added, never overwritten."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vlm4vla.analysis.builds import (AUXILIARY, ZOO, ZOO_BUILDS, build_spread, build_table, dvc_hash, read_builds,
                                     record_builds, run_weighted, spread_sentence, with_run_builds,
                                     with_run_builds_table)


def _member(root: Path, name: str, vqa: float) -> None:
    folder = root / "artifacts/zoo" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps({"name": name, "steps": 10, "vqa_accuracy": vqa,
                                                     "vqa_ci_low": vqa - 0.05, "vqa_ci_high": vqa + 0.05,
                                                     "hidden_size": 64}))


def _hash_of_vqa(root: Path, folder: Path) -> str:  # a stand-in for DVC's hash: differs when the bytes do
    return f"{folder.name}-{json.loads((folder / 'summary.json').read_text())['vqa_accuracy']}.dir"


def test_a_rebuild_is_added_next_to_the_earlier_build(tmp_path: Path) -> None:
    _member(tmp_path, "a", 0.5)
    _member(tmp_path, "b", 0.4)
    first = record_builds(tmp_path, ZOO, hasher=_hash_of_vqa)
    assert set(first) == {"a-0.5.dir", "b-0.4.dir"}
    assert "hidden_size" not in first["a-0.5.dir"] and first["a-0.5.dir"]["vqa_ci_low"] == pytest.approx(0.45)
    stamp = (tmp_path / ZOO_BUILDS).stat().st_mtime_ns
    assert record_builds(tmp_path, ZOO, hasher=_hash_of_vqa) == first  # same bytes: nothing new, file untouched
    assert (tmp_path / ZOO_BUILDS).stat().st_mtime_ns == stamp
    _member(tmp_path, "a", 0.56)  # rebuilt on another machine
    second = record_builds(tmp_path, ZOO, hasher=_hash_of_vqa)
    assert set(second) == {"a-0.5.dir", "a-0.56.dir", "b-0.4.dir"}
    assert read_builds(tmp_path) == second


def test_without_a_zoo_on_disk_the_record_is_kept_as_it_is(tmp_path: Path) -> None:
    assert record_builds(tmp_path, ZOO, hasher=_hash_of_vqa) == {}
    assert not (tmp_path / ZOO_BUILDS).exists()


def _runs(*rows: tuple[str, str, bool]) -> pd.DataFrame:
    return pd.DataFrame([{"run": f"r{i}", "prefix": "bb-", "done": done, "backbone": f"artifacts/zoo/{b}", "build": build}
                         for i, (b, build, done) in enumerate(rows)])


BUILDS = {"x1": {"name": "a", "vqa_accuracy": 0.30, "vqa_ci_low": 0.2, "vqa_ci_high": 0.4},
          "x2": {"name": "a", "vqa_accuracy": 0.60, "vqa_ci_low": 0.5, "vqa_ci_high": 0.7},
          "y1": {"name": "b", "vqa_accuracy": 0.50, "vqa_ci_low": 0.4, "vqa_ci_high": 0.6}}


def test_each_backbone_gets_the_vqa_of_its_runs_builds_weighted_by_runs() -> None:
    runs = _runs(("a", "x1", True), ("a", "x1", True), ("a", "x2", True), ("a", "x2", False),  # unfinished: no weight
                 ("b", "unrecorded", True), ("c", "z9", True))
    weighted = run_weighted(BUILDS, runs, ["vqa_accuracy"])
    assert weighted["vqa_accuracy"].to_dict() == pytest.approx({"a": (0.30 * 2 + 0.60) / 3})
    assert weighted["builds"].to_dict() == {"a": 2}  # b, c: no recorded build
    probes = pd.DataFrame({"general_vqa_accuracy": [0.9, 0.8], "probe_x": [1.0, 2.0]}, index=["a", "b"])
    out = with_run_builds(probes, BUILDS, runs)
    assert out.loc["a", "general_vqa_accuracy"] == pytest.approx(0.40)
    assert out.loc["b", "general_vqa_accuracy"] == 0.8 and out["probe_x"].tolist() == [1.0, 2.0]


def test_build_table_counts_runs_per_build_and_the_spread_is_per_backbone() -> None:
    runs = _runs(("a", "x1", True), ("a", "x2", True), ("a", "x2", True), ("b", "y1", True), ("b", "old", True))
    table = build_table(BUILDS, runs)
    assert table[["backbone", "build", "runs"]].values.tolist() == [
        ["a", "x1", 1], ["a", "x2", 2], ["b", "old", 1], ["b", "y1", 1]]
    assert table["vqa_accuracy"].isna().tolist() == [False, False, True, False]  # never recorded: no score
    spread = build_spread(table)
    assert spread["backbone"].tolist() == ["a"]  # b has one build: no spread
    assert spread.loc[0, "spread"] == pytest.approx(0.30)
    probes = pd.DataFrame({"general_vqa_accuracy": [0.3, 0.9]}, index=["a", "b"])
    assert "by up to 0.300" in spread_sentence(spread, probes) and "50%" in spread_sentence(spread, probes)
    assert "one recorded build" in spread_sentence(build_spread(build_table({"y1": BUILDS["y1"]}, runs)), probes)


def test_dvc_hash_is_the_hash_dvc_records_for_the_folder(tmp_path: Path) -> None:
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    _member(tmp_path, "a", 0.5)
    (tmp_path / "artifacts/zoo/a/weights.bin").write_bytes(bytes(range(256)) * 8)
    subprocess.run([*dvc, "add", "-q", "artifacts/zoo/a"], cwd=tmp_path, check=True)
    recorded = yaml.safe_load((tmp_path / "artifacts/zoo/a.dvc").read_text())["outs"][0]["md5"]
    assert dvc_hash(tmp_path, tmp_path / "artifacts/zoo/a") == recorded
    (tmp_path / "artifacts/zoo/a/weights.bin").write_bytes(bytes(range(256)) * 9)
    assert dvc_hash(tmp_path, tmp_path / "artifacts/zoo/a") != recorded


def test_auxiliary_records_keep_scalars_but_no_paths_and_the_skill_table_uses_the_runs_builds(tmp_path: Path) -> None:
    folder = tmp_path / AUXILIARY.folder / "q-aux-pointing"
    folder.mkdir(parents=True)
    summary = {"name": "q-aux-pointing", "base": "q", "task": "pointing", "score_before": 0.2, "score_after": 0.3,
               "aux_store": str(tmp_path / "aux-demos"), "history": [1, 2]}
    (folder / "summary.json").write_text(json.dumps(summary))
    builds = record_builds(tmp_path, AUXILIARY, hasher=lambda root, path: "h-new.dir")
    assert builds == {"h-new.dir": {"name": "q-aux-pointing", "base": "q", "task": "pointing",
                                    "score_before": 0.2, "score_after": 0.3}}
    assert read_builds(tmp_path, ZOO) == {}  # the zoo's record is another file
    builds["h-old.dir"] = {**builds["h-new.dir"], "score_after": 0.9}
    runs = pd.DataFrame([{"run": r, "done": True, "backbone": f"{AUXILIARY.folder}/q-aux-pointing", "build": b}
                         for r, b in (("s0", "h-old.dir"), ("s1", "h-old.dir"), ("s2", "h-new.dir"))])
    table = pd.DataFrame([summary, {**summary, "name": "q-aux-dense", "score_after": 0.5}])
    out = with_run_builds_table(table, builds, runs, ["score_before", "score_after"])
    assert out["score_after"].tolist() == pytest.approx([(0.9 * 2 + 0.3) / 3, 0.5])  # dense: no run, its own value
    assert out["builds"].tolist() == [2, 0] and out["score_before"].tolist() == pytest.approx([0.2, 0.2])
    unrecorded = runs.assign(build="h-gone.dir")  # no run on a recorded build: the table as it is
    same = with_run_builds_table(table, builds, unrecorded, ["score_after"])
    assert same["score_after"].tolist() == [0.3, 0.5] and same["builds"].tolist() == [0, 0]
