"""What a recorded LIBERO store holds, for people: its datasheet, headline numbers and a ground-truth figure.

``write_libero_datasheet`` is called by the writer (``libero_demos``) as the store is made;
``store_summary`` and ``plot_libero_ground_truth`` read a finished store (a ``DemoStore``) for notebook 09
and the benchmarks, in the main environment (matplotlib is imported where the figure is drawn).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vlm4vla.envs import libero as L


def write_libero_datasheet(path: Path, meta: dict[str, Any], episodes: list[dict[str, Any]], actions: np.ndarray) -> Path:
    """Counts per task, expert success, episode lengths and action statistics as markdown (deterministic)."""
    d = meta["demos"]
    last_init = d["first_init"] + d["episodes_per_task"] - 1
    if d.get("source") == "official":
        what = "official demonstrations (demo indices)"
        collection = (f"- Collection: LIBERO's official demonstrations from `{d['official_dir']}`, replayed state by state "
                      "in the simulator to render the frames and ground truth; demos whose last action does not reach "
                      "the goal are dropped.")
    else:
        what = "official initial states"
        collection = ("- Collection: privileged scripted pick-and-place expert (lib/vlm4vla/envs/libero_expert.py) after "
                      f"{d['settle_steps']} settle steps; failed episodes dropped.")
    lines = [
        "# Datasheet: scripted-expert demonstrations (LIBERO)", "",
        f"- Format version {meta['format_version']} (the Meta-World DemoStore layout); "
        f"{meta['n_episodes']} episodes, {meta['n_frames']} frames.",
        f"- Suite `{d['suite']}`, tasks {d['tasks']}, {what} {d['first_init']}-{last_init} per task.",
        f"- Camera `{meta['camera']}`, {meta['image_size']}x{meta['image_size']} RGB, upright; depth {meta['depth']}.",
        collection,
        f"- Simulator: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}.",
        f"- Segmentation classes: {meta['segmentation_classes']}.", "",
        "## Per task", "",
        "| task id | instruction | expert success | episodes kept | frames | length mean | length min-max |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for info in meta["suite"]["task_info"]:
        exp = meta["expert_success"].get(info["task"], {"successes": 0, "attempts": 0})
        lengths = [e["length"] for e in episodes if e["task"] == info["task"]]
        mean, span = (f"{np.mean(lengths):.1f}", f"{min(lengths)}-{max(lengths)}") if lengths else ("-", "-")
        lines.append(f"| {info['task_id']} | {info['instruction']} | {exp['successes']}/{exp['attempts']} | {len(lengths)} | "
                     f"{sum(lengths)} | {mean} | {span} |")
    lines += ["", "## Actions (all frames)", "", "| dim | mean | std | min | max |", "| --- | --- | --- | --- | --- |"]
    for i, name in enumerate(L.ACTION_NAMES):
        col = actions[:, i]
        lines.append(f"| {name} | {col.mean():.3f} | {col.std():.3f} | {col.min():.3f} | {col.max():.3f} |")
    lines += ["", "## Differences from the Meta-World stores", "", *(f"- {x}" for x in meta["differences_from_metaworld"])]
    path.write_text("\n".join(lines) + "\n")
    return path


def pixel_class_agreement(store: Any, column: str, class_id: int) -> float:
    """Share of frames whose ``column`` pixel (e.g. object_px) lies on segmentation class ``class_id``
    (less than 1 where the gripper or another object hides the point, or it leaves the image)."""
    xy = np.stack(store.table[column].to_numpy())  # (F, 2) x = column, y = row
    size = store.segmentation.shape[1]
    inside = np.all((xy >= 0) & (xy < size), axis=1)
    cols, rows = np.clip(xy.astype(int), 0, size - 1).T
    hits = np.asarray(store.segmentation[np.arange(len(xy)), rows, cols]) == class_id
    return float(np.mean(hits & inside)) if len(xy) else float("nan")


def store_summary(store: Any) -> dict[str, Any]:
    """Headline numbers of a LIBERO store (a DemoStore): counts, expert success, cost, size, ground-truth checks."""
    success = store.meta["expert_success"].values()
    return {"n_episodes": len(store.episodes), "n_frames": len(store),
            "expert_success": sum(v["successes"] for v in success) / max(sum(v["attempts"] for v in success), 1),
            "seconds_per_episode": store.meta["seconds_per_episode"],
            "store_mib": round(sum(f.stat().st_size for f in store.path.iterdir()) / 2**20, 1),
            "object_px_on_object": pixel_class_agreement(store, "object_px", L.TASK_OBJECT),
            "goal_px_on_goal": pixel_class_agreement(store, "goal_px", L.GOAL)}


_KEYPOINTS = (("gripper_px", "red", "gripper"), ("object_px", "cyan", "object"), ("goal_px", "yellow", "target"))
_SEG_COLOURS = ("#222222", "#b03030", "#ff9f1c", "#2ec4b6", "#ffe66d", "#7a6fb0")  # SEGMENTATION_CLASSES 0-5


def plot_libero_ground_truth(store: Any, fraction: float = 0.5) -> Any:
    """One row per task (``store``: a DemoStore): RGB with projected keypoints, depth, segmentation, and the
    segmentation over the RGB frame; the frame at ``fraction`` of the task's first stored episode."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(_SEG_COLOURS)
    first = store.episodes.groupby("task", sort=False).first()
    rows = {task: int(r.start + int(fraction * (r.length - 1))) for task, r in first.iterrows()}
    fig, axes = plt.subplots(len(rows), 4, figsize=(11, 2.9 * len(rows)), squeeze=False)
    for ax_row, (task, r) in zip(axes, rows.items()):
        frame, seg = store.table.loc[r], np.asarray(store.segmentation[r])
        for ax in (ax_row[0], ax_row[3]):
            ax.imshow(store.frames[r])
            for key, colour, label in _KEYPOINTS:
                x, y = frame[key]
                ax.scatter([x - 0.5], [y - 0.5], s=30, c=colour, edgecolors="black", label=label)  # pixel centres
        ax_row[0].set_title(f"\"{frame['instruction']}\"\nstep {frame['frame_index']}, progress {frame['progress']:.2f}", fontsize=7)
        depth = np.asarray(store.depth[r], dtype=np.float32)
        ax_row[1].imshow(depth, cmap="viridis_r")
        ax_row[1].set_title(f"depth {depth.min():.2f}-{depth.max():.2f} m", fontsize=8)
        ax_row[2].imshow(seg, cmap=cmap, vmin=0, vmax=len(_SEG_COLOURS) - 1, interpolation="nearest")
        ax_row[2].set_title("segmentation: bg/robot/gripper/object/target/other", fontsize=7)
        ax_row[3].imshow(np.ma.masked_equal(seg, 0), cmap=cmap, vmin=0, vmax=len(_SEG_COLOURS) - 1, alpha=0.5,
                         interpolation="nearest")
        ax_row[3].set_title("segmentation over RGB", fontsize=8)
        for ax in ax_row:
            ax.axis("off")
    axes[0, 0].legend(loc="lower left", fontsize=6)
    fig.tight_layout()
    return fig
