"""Persisted outputs (``persist: true``: a run's checkpoints, which a re-run stage resumes from) and
whether they were made from the data that is there now.

``vlm4vla repro`` (``schedule.dvc_launcher``) calls ``empty_stale_persisted`` before it starts a stage,
so a rebuilt backbone at the same path never lets a run resume from the old backbone's checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Mapping

LOCK_RETRY_S = 3.0  # seconds between tries of DVC's repository lock (a running stage recording its result)
LOCK_RETRIES = 100


def inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies under it."""
    return Path(path) == Path(folder) or Path(folder) in Path(path).parents


PERSISTED_INPUTS = Path(".dvc/tmp/persisted-inputs")  # per stage: the data its persisted outputs were made from


def _persisted_state(root: Path, stage: str) -> tuple[list[str], dict[str, tuple[str | None, str | None]]]:
    """``stage``'s persisted outputs (``persist: true``) and, for each of its data dependencies (an
    output of another stage or a ``.dvc`` file: a backbone, the demonstrations), ``(hash dvc.lock
    recorded when the stage last finished, hash of what is there now)``; ``None`` where there is none
    (never finished; absent)."""
    from dvc.lock import LockError
    from dvc.repo import Repo

    for _ in range(LOCK_RETRIES):
        try:
            with contextlib.chdir(root), Repo(str(root)) as repo, repo.lock:
                target = next(s for s in repo.index.stages if s.addressing == stage)
                persisted = [str(o.def_path) for o in target.outs if o.persist and o.use_cache]
                if not persisted:
                    return [], {}
                data = [o.fs_path for s in repo.index.stages if s is not target for o in s.outs]
                deps = [d for d in target.deps if any(inside(d.fs_path, p) or inside(p, d.fs_path) for p in data)]
                return persisted, {str(d.def_path): (d.hash_info.value if d.hash_info else None,
                                                     d.get_hash().value if d.exists else None) for d in deps}
        except LockError:  # a running stage is recording its result
            time.sleep(LOCK_RETRY_S)
    raise RuntimeError(f"{stage}: DVC's repository lock stayed busy for {LOCK_RETRIES * LOCK_RETRY_S:.0f} s")


def _record_path(root: Path, stage: str) -> Path:
    return root / PERSISTED_INPUTS / f"{stage.replace('/', '__')}.json"


def stale_persisted(root: Path, stage: str, again: bool = False) -> tuple[list[str], list[str]]:
    """``(changed inputs, persisted outputs)`` of ``stage`` when its persisted outputs (``persist: true``:
    a run's checkpoints, which a re-run stage resumes from) were made from other data than is there now.
    Persisted outputs kept in git (``cache: false``: the robot probes, finding 3's probes of policies
    trained on other machines) are never counted: their stages key each result themselves, and what
    was measured elsewhere cannot be made again here.

    Data: a dependency that DVC tracks as data, an output of another stage or a ``.dvc`` file (a
    backbone, the demonstrations). What the persisted outputs were made from is what the scheduler
    recorded when it last started the stage (``PERSISTED_INPUTS``), else what ``dvc.lock`` recorded when
    the stage last finished. The record matters for a stage that finished once on other data (an older
    backbone, another machine) and was then started on the current data and killed: the lock still holds
    the old hashes, but the checkpoints are the current data's and resume. Without the check, a rebuilt
    backbone at the same path leaves a finished run's checkpoints in place, the re-run stage finds them
    complete and records results of the old backbone under the new one's hash. Code dependencies are
    not data: after a code edit a run resumes (README, "a killed make repro"). A dependency with no
    recorded hash (the stage never started under this scheduler and never finished) or that is absent is
    no change. ``again``: stale regardless (``vlm4vla repro --again``; no inputs named). ``([], [])``
    when not stale or nothing is persisted.
    """
    persisted, hashes = _persisted_state(root, stage)
    return _stale(root, stage, persisted, hashes, again)


def _stale(root: Path, stage: str, persisted: list[str], hashes: Mapping[str, tuple[str | None, str | None]],
           again: bool) -> tuple[list[str], list[str]]:
    if not persisted or again:
        return [], persisted
    record = _record_path(root, stage)
    made_from = (json.loads(record.read_text()) if record.exists()
                 else {path: locked for path, (locked, _) in hashes.items()})
    changed = [path for path, (_, now) in hashes.items()
               if made_from.get(path) is not None and now is not None and now != made_from[path]]
    return changed, persisted if changed else []


def empty_stale_persisted(root: Path, stage: str, again: bool = False) -> str | None:
    """Remove ``stage``'s persisted outputs if ``stale_persisted``, then record the data they are made
    from from now on (``PERSISTED_INPUTS``); a line saying what was removed, or None."""
    persisted, hashes = _persisted_state(root, stage)
    changed, emptied = _stale(root, stage, persisted, hashes, again)
    for path in emptied:
        target = root / path
        shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink(missing_ok=True)
    if persisted:
        record = _record_path(root, stage)
        record.parent.mkdir(parents=True, exist_ok=True)
        partial = record.with_suffix(".json.partial")
        partial.write_text(json.dumps({path: now for path, (_, now) in hashes.items()}, indent=1))
        partial.replace(record)  # a killed scheduler leaves the old record or the new one, never half of one
    why = "named by --again" if again else f"{', '.join(changed)} changed since its persisted outputs were made"
    return f"fresh    {stage}: {why}; emptied {', '.join(emptied)}, it starts from scratch" if emptied else None
