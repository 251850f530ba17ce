"""A finished run's small results, copied where git keeps them (``constants.RUN_RESULTS_DIR/<run>/``).

The run folder (``constants.RUNS_DIR/<run>/``) holds checkpoints, the final policy and videos: tens of
MB a run, kept in DVC's cache on the machine that trained it. What the findings read (closed-loop
results, training history, the summary and freezing table) is a few hundred kB; it is copied into a
folder that DVC records with ``cache: false`` and git tracks, so a fresh clone has every finished run's
numbers and ``dvc repro --allow-missing`` (what ``vlm4vla repro`` does) does not train it again.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

RESULT_FILES = ("eval_results.json", "eval_checkpoints.json", "history.csv", "train_summary.json", "freezing.csv")


def publish_results(run_dir: str | Path, results_dir: str | Path) -> list[str]:
    """Copy ``RESULT_FILES`` that exist in ``run_dir`` into ``results_dir``, replacing it whole.

    Written into a temporary sibling folder that is renamed into place, so a killed stage leaves the
    old results or the new ones, never a mix. Returns the names copied; ``eval_results.json`` is required.
    """
    run_dir, results_dir = Path(run_dir), Path(results_dir)
    if not (run_dir / "eval_results.json").is_file():
        raise FileNotFoundError(f"{run_dir / 'eval_results.json'} is missing: the run has not been evaluated")
    results_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{results_dir.name}.", dir=results_dir.parent))
    copied = []
    for name in RESULT_FILES:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, tmp / name)
            copied.append(name)
    if results_dir.exists():
        old = results_dir.with_name(f".{results_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        results_dir.rename(old)
        tmp.rename(results_dir)
        shutil.rmtree(old)
    else:
        tmp.rename(results_dir)
    return copied
