"""Robot probes of every stored backbone, one cached JSON per backbone (notebook 08-robot-probes).

``probe_backbones`` runs ``vlm4vla.probes.robot_probe_summary`` (embodied VQA probes and linear
probes of the vision features) on each backbone folder under the given roots (``artifacts/zoo``,
``artifacts/control-supervision``, ``artifacts/auxiliary-vlms``) and writes
``<out_dir>/<root name>/<member>.json``, read back by ``vlm4vla.analysis.zoo.load_robot_probes``
(and ``load_probes``, finding 1's probe table).
The measurements live in ``probes``; this module only runs them over stored backbones and caches
the results, so it sits with the analyses that read pipeline outputs.

A result is reused when its key matches: the backbone's files, the demonstration store, the probe
config and the probe code. The stage keeps its outputs across a re-run (``persist`` in dvc.yaml),
so a killed stage resumes where it stopped and a changed input recomputes only what it changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import vlm4vla.data.embodied_qa
import vlm4vla.probes.embodied
from vlm4vla.analysis.zoo import ROBOT_PROBE_SCORES, read_robot_probes
from vlm4vla.backbones.base import load_backbone
from vlm4vla.data.demos import DemoStore
from vlm4vla.data.embodied_qa import EmbodiedQAConfig
from vlm4vla.probes.embodied import EmbodiedProbeConfig
from vlm4vla.probes.linear import LinearProbeConfig
from vlm4vla.probes.summary import PREFIX, ProbeConfig, robot_probe_summary

# What decides a result. Backbone: the files load_backbone reads (not README / history / summary,
# which a later stage may rewrite). Store: its metadata (suite, seeds, episode list). Code: the
# probes and the items they ask; other library changes do not invalidate (delete the folder then).
MODEL_FILES = ("config.json", "vlm4vla.json", "*.safetensors", "tokenizer*.json", "special_tokens_map.json")
STORE_FILES = ("meta.json", "episodes.parquet")
CODE_FILES = (*sorted(Path(vlm4vla.probes.embodied.__file__).parent.glob("*.py")), Path(vlm4vla.data.embodied_qa.__file__))
LOWER_IS_BETTER = ("probe_pointing_error_px",)  # every other score: higher is better


@dataclass(frozen=True)
class Member:
    """One backbone folder: ``group`` is the name of the root it lies under (``zoo``, ...)."""

    group: str
    name: str
    path: Path

    def result_path(self, out_dir: Path) -> Path:
        return Path(out_dir) / self.group / f"{self.name}.json"


def find_members(roots: Sequence[str | Path]) -> list[Member]:
    """Every checkpoint folder (one with a config.json) directly under each root, sorted by name.

    A root that does not exist is skipped with a printed note (its stage may not be in the profile).
    """
    members = []
    for root in map(Path, roots):
        if not root.is_dir():
            print(f"robot probes: {root} does not exist, skipped")
            continue
        members += [Member(root.name, p.name, p) for p in sorted(root.iterdir()) if (p / "config.json").is_file()]
    return members


def make_probe_config(embodied_qa: dict[str, Any], linear: dict[str, Any], batch_size: int = 32,
                      random_twin: bool = True) -> ProbeConfig:
    """The probe config from notebook parameters (plain dicts of EmbodiedQAConfig / LinearProbeConfig fields)."""
    embodied = EmbodiedProbeConfig(qa=EmbodiedQAConfig(**embodied_qa), batch_size=batch_size)
    return ProbeConfig(embodied, LinearProbeConfig(**linear, batch_size=batch_size), random_twin)


def _digest(paths: Sequence[Path]) -> str:
    """sha256 over the names and bytes of ``paths`` (names: a renamed file changes the digest)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _files(folder: Path, patterns: Sequence[str]) -> list[Path]:
    return sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})


def store_key(store_path: Path, cfg: ProbeConfig) -> dict[str, Any]:
    """The part of the key shared by every backbone: store, probe config and probe code."""
    return {"store": _digest(_files(Path(store_path), STORE_FILES)),
            "config": json.loads(json.dumps(dataclasses.asdict(cfg))),
            "code": _digest(CODE_FILES)}


def result_key(member: Member, shared: dict[str, Any]) -> dict[str, Any]:
    """Everything that decides ``member``'s result (see the module docstring)."""
    return {"backbone": _digest(_files(member.path, MODEL_FILES)), **shared}


def is_done(path: Path, key: dict[str, Any]) -> bool:
    """Whether ``path`` holds a result made with exactly ``key`` (a damaged file is not done)."""
    try:
        return json.loads(Path(path).read_text())["key"] == key
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _plain(value: Any) -> Any:
    """Numpy scalars as Python numbers, NaN / inf as null (strict JSON)."""
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_result(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` as JSON atomically (a temporary sibling renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def probe_member(member: Member, store: DemoStore, cfg: ProbeConfig, key: dict[str, Any]) -> dict[str, Any]:
    """Load ``member``, run every robot probe, return its record (name, group, path, key, seconds, probes)."""
    start = time.perf_counter()
    probes = robot_probe_summary(load_backbone(member.path), store, cfg)
    return {"name": member.name, "group": member.group, "backbone": str(member.path), "key": key,
            "seconds": round(time.perf_counter() - start, 1), "probes": {k: _plain(v) for k, v in probes.items()}}


def prune_stale(out_dir: Path, members: Sequence[Member], keep: Sequence[Member] = ()) -> list[Path]:
    """Remove results (and half-written files) of backbones that are no longer there; returns them.
    ``keep``: members whose results stay although they are not probed here (their checkpoint is elsewhere)."""
    keep = {m.result_path(out_dir) for m in [*members, *keep]}
    stale = [p for p in Path(out_dir).glob("*/*.json*") if p not in keep]
    for path in stale:
        path.unlink()
    return stale


def probe_backbones(members: Sequence[Member], store: DemoStore, cfg: ProbeConfig, out_dir: str | Path,
                    progress: bool = True, keep: Sequence[Member] = ()) -> pd.DataFrame:
    """Probe every member whose result is missing or stale; one row per member: group, name,
    ``computed`` (False: an up-to-date result was reused) and the probe ``seconds`` it took.
    ``keep``: see ``prune_stale``."""
    out_dir = Path(out_dir)
    prune_stale(out_dir, members, keep)
    shared = store_key(store.path, cfg)
    rows = []
    for member in tqdm(members, desc="robot probes", disable=not progress):
        path, key = member.result_path(out_dir), result_key(member, shared)
        computed = not is_done(path, key)
        if computed:
            write_result(path, probe_member(member, store, cfg, key))
        seconds = json.loads(path.read_text())["seconds"]
        rows.append({"group": member.group, "name": member.name, "computed": computed, "seconds": seconds})
    return pd.DataFrame(rows, columns=["group", "name", "computed", "seconds"])


def load_all(out_dir: str | Path, groups: Sequence[str]) -> pd.DataFrame:
    """The results of each group under ``out_dir``, stacked with a (group, name) index."""
    tables = {g: read_robot_probes(Path(out_dir) / g) for g in groups}
    tables = {g: t for g, t in tables.items() if len(t)}
    return pd.concat(tables, names=["group", "name"]) if tables else pd.DataFrame()


def _with_interval(score: float, low: float, high: float) -> str:
    return f"{score:.2f}" if not np.isfinite(low) else f"{score:.2f} [{low:.2f}, {high:.2f}]"


def score_table(probes: pd.DataFrame) -> pd.DataFrame:
    """One column per probe score, ``score [ci_low, ci_high]`` where the probe gives a 95% interval."""
    none = pd.Series(np.nan, index=probes.index)
    return pd.DataFrame({col.removeprefix(PREFIX): [_with_interval(*v) for v in zip(
        probes[col], probes.get(f"{col}_ci_low", none), probes.get(f"{col}_ci_high", none))]
        for col in ROBOT_PROBE_SCORES if col in probes}, index=probes.index)


def reference_table(probes: pd.DataFrame) -> pd.DataFrame:
    """Each score next to what it is measured against: chance (and the free answer's accuracy,
    ``generated``) for embodied probes, raw pixels and a random-init twin of the same architecture for
    linear probes; ``gain`` = score minus the twin's."""
    rows = []
    for (group, name), row in probes.iterrows():
        for col in (c for c in ROBOT_PROBE_SCORES if c in probes):
            refs = {"chance": row.get(f"{col}_chance", np.nan), "generated": row.get(f"{col}_generated", np.nan),
                    "pixels": row.get(f"{col}_pixels", np.nan), "random_init": row.get(f"{col}_random_init", np.nan)}
            rows.append({"group": group, "name": name, "probe": col.removeprefix(PREFIX), "score": row[col],
                         **refs, "gain_over_random_init": row[col] - refs["random_init"]})
    return pd.DataFrame(rows, columns=["group", "name", "probe", "score", "chance", "generated", "pixels", "random_init",
                                       "gain_over_random_init"])


def plot_probe_scores(probes: pd.DataFrame) -> plt.Figure:
    """One panel per probe: each backbone's score with its 95% interval, chance (dotted) and, for
    linear probes, the raw-pixel reference (dashed) and the random-init twin (grey tick)."""
    columns = [c for c in ROBOT_PROBE_SCORES if c in probes]
    fig, axes = plt.subplots(1, max(1, len(columns)), figsize=(2.6 * len(columns), 0.3 * len(probes) + 1.6),
                             sharey=True, squeeze=False)
    labels = [f"{name} ({group})" for group, name in probes.index]
    y = np.arange(len(probes))
    for ax, col in zip(axes[0], columns):
        score = probes[col].to_numpy(float)
        lo, hi = (probes.get(f"{col}_ci_{s}", probes[col]).to_numpy(float) for s in ("low", "high"))
        err = np.nan_to_num(np.vstack([score - lo, hi - score]).clip(min=0))  # a bootstrap interval may miss the score
        ax.barh(y, score, xerr=err, color="#3a7", capsize=2)
        if f"{col}_random_init" in probes:
            ax.scatter(probes[f"{col}_random_init"], y, marker="|", s=120, color="#666", zorder=3)
        for ref, style in (("chance", ":"), ("pixels", "--")):
            if f"{col}_{ref}" in probes:
                ax.axvline(float(np.nanmean(probes[f"{col}_{ref}"])), color="#c33", linestyle=style, lw=1)
        if col in LOWER_IS_BETTER and np.nanmax(score, initial=0) > 100:
            ax.set_xscale("log")  # unparsed or far-off answers reach thousands of pixels
        ax.set_title(col.removeprefix(PREFIX) + (" (lower is better)" if col in LOWER_IS_BETTER else ""), fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_yticks(y, labels)
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    return fig
