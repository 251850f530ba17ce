"""Which build of each zoo backbone a run trained on, and what that build's probes measured.

A fresh machine rebuilds the zoo (DVC's cache does not survive it) from the same seeded code, and on
another CPU the float kernels differ, so the weights and the probe scores differ too: the general VQA
accuracy of one recipe moved by up to 0.07 between the 2026-12-02 and 2026-12-06 builds. Runs from
different sittings then trained on different builds (``coverage``'s ``build``, the DVC hash dvc.lock
recorded for the checkpoint). This module keeps, in git, the probe scores of every build it has seen
(``artifacts/zoo-builds.json``, keyed by that hash) so that finding 1 compares each run with the probe
of the backbone it actually trained from, and shows how far one recipe's probes move between builds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from vlm4vla.analysis.runs import backbone_name

ZOO_BUILDS = "artifacts/zoo-builds.json"
ZOO_DIR = "artifacts/zoo"
# The member summary fields a build record keeps (general VQA overall and by question type, with intervals).
KEPT = ("name", "family", "steps", "recipe", "vqa_accuracy", "vqa_ci_low", "vqa_ci_high", "vqa_n")


def dvc_hash(root: Path, path: Path) -> str:
    """The hash DVC records in dvc.lock for the folder ``path`` (``<md5>.dir``), computed without
    writing to DVC's cache."""
    from dvc.repo import Repo
    from dvc_data.hashfile.build import build

    repo = Repo(str(root))
    *_, tree = build(repo.cache.local, os.fspath(Path(path).resolve()), repo.fs, "md5", dry_run=True)
    return tree.hash_info.value


def read_builds(root: Path) -> dict[str, dict]:
    """The recorded builds: DVC hash -> the member's summary fields (``KEPT`` and ``vqa_*``)."""
    path = Path(root) / ZOO_BUILDS
    return json.loads(path.read_text()) if path.is_file() else {}


def write_builds(root: Path, builds: dict[str, dict]) -> Path:
    """Write the record atomically (a killed run leaves the previous file whole), sorted for diffs."""
    path = Path(root) / ZOO_BUILDS
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(builds, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def member_record(summary: dict) -> dict:
    """What a build record keeps of a member's summary.json: ``KEPT`` and every ``vqa_*`` field."""
    return {k: v for k, v in summary.items() if k in KEPT or k.startswith("vqa_")}


def record_zoo_builds(root: Path, hasher=dvc_hash) -> dict[str, dict]:
    """Add each zoo member on disk (``artifacts/zoo/<name>/summary.json``) to the record under its DVC
    hash, if it is not there yet, and return the record. Nothing on disk: the record as it is."""
    root = Path(root)
    builds = read_builds(root)
    added = False
    for summary in sorted((root / ZOO_DIR).glob("*/summary.json")):
        key = hasher(root, summary.parent)
        if key not in builds:
            builds[key] = member_record(json.loads(summary.read_text()))
            added = True
    if added:
        write_builds(root, builds)
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


def run_weighted_vqa(builds: dict[str, dict], runs: pd.DataFrame) -> pd.Series:
    """Per backbone name: the general VQA accuracy of the builds its finished runs trained on, averaged
    over those runs (a build used by more runs weighs more). Backbones none of whose runs trained on a
    recorded build are left out (the caller keeps its own value for them)."""
    done = runs[runs["done"] & runs["build"].isin(list(builds))] if len(runs) else runs
    if done.empty:
        return pd.Series(dtype=float, name="general_vqa_accuracy")
    scores = done.assign(name=done["backbone"].map(backbone_name),
                         vqa=done["build"].map(lambda k: builds[k].get("vqa_accuracy")))
    return scores.groupby("name")["vqa"].mean().rename("general_vqa_accuracy")


def with_run_builds(probes: pd.DataFrame, builds: dict[str, dict], runs: pd.DataFrame) -> pd.DataFrame:
    """``probes`` (``load_probes``) with ``general_vqa_accuracy`` replaced, where known, by the run-weighted
    VQA of the builds the runs trained on (``run_weighted_vqa``)."""
    weighted = run_weighted_vqa(builds, runs)
    out = probes.copy()
    shared = out.index.intersection(weighted.index)
    out.loc[shared, "general_vqa_accuracy"] = weighted[shared]
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
