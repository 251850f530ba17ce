"""DATASHEET.md of a demonstration store: what is in it, in numbers (no timestamps: deterministic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

_DIMS = ("dx", "dy", "dz", "gripper")


def write_datasheet(path: Path, meta: dict[str, Any], episodes: pd.DataFrame, actions: np.ndarray) -> Path:
    """Counts per task, expert success, episode lengths and action statistics as markdown."""
    suite = meta["suite"]
    lines = [
        "# Datasheet: scripted-expert demonstrations (Meta-World)", "",
        f"- Format version {meta['format_version']}; {meta['n_episodes']} episodes, {meta['n_frames']} frames.",
        f"- Camera `{meta['camera']}`, {meta['image_size']}x{meta['image_size']} RGB; depth {meta['depth']}.",
        f"- Tasks: {', '.join(suite['tasks'])}; train variations {suite['train_variations']} (held-out {suite['eval_variations']}).",
        f"- Instructions: `{suite['instruction_split']}` paraphrases; seed {meta['demos']['seed']}.",
        "- Collection: Meta-World 3.1.1 scripted experts on the privileged state; failed episodes dropped.",
        f"- Segmentation classes: {meta['segmentation_classes']}.", "",
        "## Per task", "",
        "| task | expert success | episodes kept | frames | length mean | length min-max |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for task in suite["tasks"]:
        exp = meta["expert_success"].get(task, {"successes": 0, "attempts": 0})
        lengths = episodes.loc[episodes["task"] == task, "length"] if len(episodes) else pd.Series(dtype=int)
        span = f"{lengths.min()}-{lengths.max()}" if len(lengths) else "-"
        mean = f"{lengths.mean():.1f}" if len(lengths) else "-"
        lines.append(f"| {task} | {exp['successes']}/{exp['attempts']} | {len(lengths)} | {int(lengths.sum())} | {mean} | {span} |")
    lines += ["", "## Actions (all frames)", "", "| dim | mean | std | min | max |", "| --- | --- | --- | --- | --- |"]
    for d, name in enumerate(_DIMS):
        col = actions[:, d]
        lines.append(f"| {name} | {col.mean():.3f} | {col.std():.3f} | {col.min():.3f} | {col.max():.3f} |")
    path.write_text("\n".join(lines) + "\n")
    return path
