"""Finished stages whose data was only rebuilt: kept, not run again.

A fresh machine has none of DVC's cache, so the scheduler rebuilds the data a new run reads (the
demonstrations, the zoo). The same seeded code can give other bytes there (CPU float kernels,
parquet metadata), and DVC then sees every finished stage that read the earlier bytes as changed.
``rebuilt_only`` tells those apart from real changes by the producer's recipe (command, parameters,
code, and the recipes of its own inputs) as ``dvc.lock`` held it in git when the stage was recorded.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Callable, Mapping

import yaml

from .persisted import inside


def rebuilt_only(root: Path, data_changes: Mapping[str, list[str]], outputs: Mapping[str, list[str]]) -> set[str]:
    """Of the stages in ``data_changes`` (stage -> its dependencies whose content changed), those whose
    every changed dependency is the output of a stage with the same recipe as when this stage was
    recorded. "When recorded": the latest unbroken run of commits whose ``dvc.lock`` holds this stage's
    current entry; the producer's recipe in any of them counts as long as its outputs there are the
    ones of the run's first commit (a later edit that gave back the same bytes is the same data). A
    stage recorded only in the working tree is not among them. ``outputs``: each stage's output paths."""
    producers = {out: stage for stage, outs in outputs.items() for out in outs}

    def producer(path: str) -> str | None:
        return next((stage for out, stage in producers.items() if inside(path, out)), None)

    def outs(stage: str, lock: Mapping[str, dict]) -> object:
        return json.dumps((lock.get(stage) or {}).get("outs"), sort_keys=True)

    if not data_changes:
        return set()
    lock_file = Path(root) / "dvc.lock"
    now = _lock_stages(lock_file.read_text() if lock_file.is_file() else "")
    history = _LockHistory(Path(root))
    kept = set()
    for stage, paths in data_changes.items():
        span = history.span(stage, now.get(stage))
        if not span:
            continue
        made_by = {producer(path) for path in paths}
        if None in made_by:
            continue
        if all(_recipe(q, now, producer) in {_recipe(q, lock, producer) for lock in span
                                              if outs(q, lock) == outs(q, span[0])} for q in made_by):
            kept.add(stage)
    return kept


def _recipe(stage: str, lock: Mapping[str, dict], producer: Callable[[str], str | None]) -> object:
    """What ``stage`` was made from by ``lock``: command, parameters and each dependency's hash, where a
    dependency another stage produces counts by that stage's recipe instead of its bytes."""
    entry = lock.get(stage)
    if entry is None:
        return None
    deps = []
    for dep in entry.get("deps") or []:
        made_by = producer(dep["path"])
        deps.append((dep["path"], _recipe(made_by, lock, producer) if made_by and made_by != stage else dep.get("md5")))
    return (entry.get("cmd"), json.dumps(entry.get("params"), sort_keys=True), tuple(deps))


def _lock_stages(text: str) -> dict[str, dict]:
    """The ``stages`` of a ``dvc.lock`` text (the C YAML loader where there is one: the lock is large)."""
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    return data.get("stages") or {}


class _LockHistory:
    """``dvc.lock`` as committed, newest first, parsed once per commit when asked for."""

    def __init__(self, root: Path) -> None:
        self.root = root
        done = subprocess.run(["git", "log", "--format=%H", "--", "dvc.lock"], cwd=root, capture_output=True, text=True)
        self.commits = done.stdout.split() if done.returncode == 0 else []
        self._parsed: dict[str, dict[str, dict]] = {}

    def lock_at(self, commit: str) -> dict[str, dict]:
        if commit not in self._parsed:
            text = subprocess.run(["git", "show", f"{commit}:dvc.lock"], cwd=self.root, capture_output=True,
                                  text=True).stdout
            self._parsed[commit] = _lock_stages(text)
        return self._parsed[commit]

    def span(self, stage: str, entry: dict | None) -> list[dict[str, dict]]:
        """The locks of the latest unbroken run of commits holding ``entry`` for ``stage``, oldest first."""
        found = []
        for commit in self.commits:
            lock = self.lock_at(commit)
            if entry is None or lock.get(stage) != entry:
                break
            found.append(lock)
        return found[::-1]
