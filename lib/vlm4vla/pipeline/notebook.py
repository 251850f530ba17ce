"""The few helpers a notebook calls: repository paths and headline metrics.

Notebooks resolve every path from the repository root, never from the working directory, so the
same notebook runs from papermill (cwd = repo root), JupyterLab (cwd = notebooks/) or a test clone.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

_MARKERS = ("dvc.yaml", "pyproject.toml")


def repo_root(start: str | Path | None = None) -> Path:
    """The repository root: ``$VLM4VLA_ROOT`` if set, else the nearest parent holding dvc.yaml."""
    if env := os.environ.get("VLM4VLA_ROOT"):
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if all((folder / m).exists() for m in _MARKERS):
            return folder
    raise FileNotFoundError(f"no repository root (a folder with {' and '.join(_MARKERS)}) above {here}")


def repo_path(relative: str | Path) -> Path:
    """``relative`` resolved against the repository root (absolute paths pass through)."""
    path = Path(relative)
    return path if path.is_absolute() else repo_root() / path


def write_metrics(metrics_path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write a stage's flat headline metrics atomically (DVC metric file); merges with existing keys."""
    path = repo_path(metrics_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    for key, value in metrics.items():
        if not isinstance(key, str):
            raise TypeError(f"metric names must be strings, got {key!r}")
        current[key] = _plain(value, key)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def _plain(value: Any, key: str) -> Any:
    """A JSON-able scalar (numpy scalars converted; NaN becomes null so JSON stays valid)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"metric {key!r} must be a number, bool or string, got {type(value).__name__}")


def read_metrics(prefix: str) -> dict[str, dict[str, Any]]:
    """Headline metrics of every stage under ``artifacts/metrics/<prefix>/`` (e.g. ``runs``), by name."""
    folder = repo_path(f"artifacts/metrics/{prefix}")
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
