"""Which build of a checkpoint a run trained on, and what that build's probes measured.

A fresh machine rebuilds the zoo and the auxiliary VLMs (DVC's cache does not survive it) from the same
seeded code, and on another CPU the float kernels differ, so the weights and the probe scores differ
too: the general VQA of one zoo recipe moved by up to 0.07 between the 2026-12-02 and 2026-12-06
builds, and qwen-s-long's pointing fine-tune ended at a mean error of 63 px in one build and 10 px in
the next. Runs from different sittings then trained on different builds (``coverage``'s ``build``, the
DVC hash dvc.lock recorded for the checkpoint). This module keeps, in git, the summary of every build
it has seen (``artifacts/zoo-builds.json``, ``artifacts/auxiliary-vlm-builds.json``, keyed by that
hash) so that a finding compares each run with the probes of the checkpoint it actually trained from,
and shows how far one recipe's probes move between builds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from vlm4vla.analysis.runs import backbone_name
from vlm4vla.pipeline.report import _write_atomic


@dataclass(frozen=True)
class BuildRecord:
    """Where a family of checkpoints lives (``folder/<name>/summary.json``), the git-kept file that records
    their builds, and which summary fields a record keeps (``fields`` exactly, plus those starting with
    one of ``prefixes``; every scalar field when both are empty)."""
    folder: str
    file: str
    fields: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    def keep(self, summary: dict) -> dict:
        scalar = {k: v for k, v in summary.items() if v is None or isinstance(v, (str, int, float, bool))}
        if not self.fields and not self.prefixes:
            return {k: v for k, v in scalar.items() if not (isinstance(v, str) and os.sep in v)}  # no paths
        return {k: v for k, v in scalar.items() if k in self.fields or k.startswith(self.prefixes)}


# General VQA overall and by question type, with intervals.
ZOO = BuildRecord("artifacts/zoo", "artifacts/zoo-builds.json", fields=("name", "family", "steps", "recipe"),
                  prefixes=("vqa_",))
# The auxiliary skill and general VQA before and after each fine-tune, and its recipe.
AUXILIARY = BuildRecord("artifacts/auxiliary-vlms", "artifacts/auxiliary-vlm-builds.json")
ZOO_BUILDS = ZOO.file


def dvc_hash(root: Path, path: Path) -> str:
    """The hash DVC records in dvc.lock for the folder ``path`` (``<md5>.dir``), computed without
    writing to DVC's cache."""
    from dvc_data.hashfile.build import build

    repo = _dvc_repo(os.fspath(Path(root).resolve()))
    *_, tree = build(repo.cache.local, os.fspath(Path(path).resolve()), repo.fs, "md5", dry_run=True)
    return tree.hash_info.value


@lru_cache(maxsize=4)
def _dvc_repo(root: str):
    """DVC's view of ``root``, opened once per process (one hash per zoo member)."""
    from dvc.repo import Repo

    return Repo(root)


def read_builds(root: Path, kind: BuildRecord = ZOO) -> dict[str, dict]:
    """The recorded builds: DVC hash -> the member's kept summary fields."""
    path = Path(root) / kind.file
    return json.loads(path.read_text()) if path.is_file() else {}


def write_builds(root: Path, builds: dict[str, dict], kind: BuildRecord = ZOO) -> Path:
    """Write the record atomically (a killed run leaves the previous file whole), sorted for diffs."""
    path = Path(root) / kind.file
    _write_atomic(path, json.dumps(builds, indent=1, sort_keys=True) + "\n")
    return path


def record_builds(root: Path, kind: BuildRecord = ZOO, hasher=dvc_hash) -> dict[str, dict]:
    """Add each member on disk (``<kind.folder>/<name>/summary.json``) to the record under its DVC hash,
    if it is not there yet, and return the record. Nothing on disk: the record as it is."""
    root = Path(root)
    builds = read_builds(root, kind)
    added = False
    for summary in sorted((root / kind.folder).glob("*/summary.json")):
        key = hasher(root, summary.parent)
        if key not in builds:
            builds[key] = kind.keep(json.loads(summary.read_text()))
            added = True
    if added:
        write_builds(root, builds, kind)
    return builds


def build_table(builds: dict[str, dict], runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (backbone, build): its general VQA with interval and how many finished runs
    (``coverage`` rows) trained on it; ``build`` is the hash's first 8 characters. Builds that finished
    runs trained on but that were never recorded (made before the record existed) have NaN scores."""
    done = runs[runs["done"] & runs["build"].notna()] if len(runs) else runs
    used = done.groupby("build").size() if len(done) else pd.Series(dtype=int)
    rows = [{"backbone": b["name"], "build": key[:8], "vqa_accuracy": b.get("vqa_accuracy"),
             "ci_low": b.get("vqa_ci_low"), "ci_high": b.get("vqa_ci_high"), "runs": int(used.get(key, 0))}
            for key, b in builds.items()]
    unrecorded = done[~done["build"].isin(list(builds))] if len(done) else done
    for (backbone, key), group in unrecorded.groupby(["backbone", "build"]) if len(unrecorded) else ():
        rows.append({"backbone": backbone_name(backbone), "build": key[:8], "vqa_accuracy": float("nan"),
                     "ci_low": float("nan"), "ci_high": float("nan"), "runs": len(group)})
    columns = ["backbone", "build", "vqa_accuracy", "ci_low", "ci_high", "runs"]
    return pd.DataFrame(rows, columns=columns).sort_values(["backbone", "build"], ignore_index=True)


def build_spread(table: pd.DataFrame) -> pd.DataFrame:
    """Per backbone with 2+ recorded builds: the lowest and highest general VQA and their difference."""
    several = table.dropna(subset=["vqa_accuracy"]).groupby("backbone").filter(lambda g: len(g) > 1)
    if several.empty:
        return pd.DataFrame(columns=["backbone", "builds", "vqa_min", "vqa_max", "spread"])
    spread = several.groupby("backbone")["vqa_accuracy"].agg(builds="size", vqa_min="min", vqa_max="max").reset_index()
    spread["spread"] = spread["vqa_max"] - spread["vqa_min"]
    return spread


def run_weighted(builds: dict[str, dict], runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Per checkpoint name: each of ``columns`` of the builds its finished runs trained on, averaged over
    those runs (a build used by more runs weighs more), and ``builds``, how many recorded builds that is.
    Checkpoints none of whose runs trained on a recorded build are left out (the caller keeps its own
    values for them)."""
    done = runs[runs["done"] & runs["build"].isin(list(builds))] if len(runs) else runs
    if done.empty:
        return pd.DataFrame(columns=[*columns, "builds"], dtype=float)
    values = pd.DataFrame([{c: builds[k].get(c, float("nan")) for c in columns} for k in done["build"]],
                          index=done.index, dtype=float)
    by_name = values.assign(name=done["backbone"].map(backbone_name), build=done["build"]).groupby("name")
    return by_name[columns].mean().assign(builds=by_name["build"].nunique())


def with_run_builds(probes: pd.DataFrame, builds: dict[str, dict], runs: pd.DataFrame) -> pd.DataFrame:
    """``probes`` (``load_probes``, indexed by backbone name) with ``general_vqa_accuracy`` replaced, where
    known, by the run-weighted VQA of the builds the runs trained on."""
    table = with_run_builds_table(probes.rename(columns={"general_vqa_accuracy": "vqa_accuracy"})
                                  .rename_axis("name").reset_index(), builds, runs, ["vqa_accuracy"])
    return table.drop(columns="builds").set_index("name").rename_axis(probes.index.name) \
        .rename(columns={"vqa_accuracy": "general_vqa_accuracy"})


def with_run_builds_table(table: pd.DataFrame, builds: dict[str, dict], runs: pd.DataFrame,
                          columns: list[str]) -> pd.DataFrame:
    """``table`` (one row per checkpoint, a ``name`` column: e.g. ``auxiliary_table``) with ``columns``
    replaced, where known, by the run-weighted values of the builds the runs trained on (``run_weighted``),
    and a ``builds`` column: how many recorded builds those values average (0: the table's own values,
    the build on disk)."""
    weighted = run_weighted(builds, runs, columns)
    out = table.copy()
    known = out["name"].isin(weighted.index)
    for column in columns if known.any() else ():
        out.loc[known, column] = out.loc[known, "name"].map(weighted[column]).to_numpy()
    out["builds"] = out["name"].map(weighted["builds"]).fillna(0).astype(int)
    return out


def spread_sentence(spread: pd.DataFrame, probes: pd.DataFrame) -> str:
    """One sentence comparing the largest build-to-build move of a backbone's general VQA with the range
    of general VQA across backbones (the x axis of the capability-vs-control panels)."""
    if spread.empty:
        return "Every backbone's runs trained on one recorded build: no build-to-build comparison yet."
    top = spread.loc[spread["spread"].idxmax()]
    across = probes["general_vqa_accuracy"].max() - probes["general_vqa_accuracy"].min()
    return (f"Rebuilding the zoo from the same seeded recipe on another machine moved a backbone's general VQA "
            f"by up to {top['spread']:.3f} (`{top['backbone']}`: {top['vqa_min']:.3f} to {top['vqa_max']:.3f}; "
            f"median {spread['spread'].median():.3f} over {len(spread)} backbones), against a range of "
            f"{across:.3f} across backbones: the probe's own build-to-build noise is "
            f"{top['spread'] / across:.0%} of the spread the correlations below rest on.")
