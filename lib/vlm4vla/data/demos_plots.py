"""Figures of a DemoStore for the notebooks: sample frames with their ground truth overlaid."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from vlm4vla.data.demos import DemoStore

_KEYPOINTS = (("gripper_px", "red", "gripper"), ("object_px", "cyan", "object"), ("goal_px", "yellow", "goal"))
# background, robot, gripper, task object, goal: ids of envs.ground_truth.SEGMENTATION_CLASSES
_FAR_M = 5.0  # the scene fits in ~2 m of the camera; beyond is the far plane
_SEG_COLOURS = ListedColormap(["#222222", "#b03030", "#ff9f1c", "#2ec4b6", "#ffe66d"])


def sample_rows(store: DemoStore, fraction: float = 0.5) -> dict[str, int]:
    """Per task, the row at ``fraction`` of its first stored episode."""
    first = store.episodes.groupby("task", sort=False).first()
    return {task: int(r.start + int(fraction * (r.length - 1))) for task, r in first.iterrows()}


def plot_ground_truth(store: DemoStore, fraction: float = 0.5) -> Figure:
    """One row per task: RGB with projected keypoints and the instruction, depth, segmentation."""
    rows = sample_rows(store, fraction)
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), squeeze=False)
    for ax_row, (task, r) in zip(axes, rows.items()):
        frame = store.table.loc[r]
        ax_row[0].imshow(store.frames[r])
        for key, colour, label in _KEYPOINTS:
            x, y = frame[key]
            ax_row[0].scatter([x - 0.5], [y - 0.5], s=30, c=colour, edgecolors="black", label=label)  # pixel centres
        ax_row[0].set_title(f"{task}\n\"{frame['instruction']}\"", fontsize=8)
        depth = np.asarray(store.depth[r], dtype=np.float32)
        near = depth[depth < _FAR_M]  # the sky/far wall sits at the far plane (~100 m): leave it out
        ax_row[1].imshow(np.minimum(depth, near.max()), cmap="viridis_r", vmin=near.min(), vmax=near.max())
        ax_row[1].set_title(f"depth {near.min():.2f}-{near.max():.2f} m (far plane clipped)", fontsize=8)
        ax_row[2].imshow(store.segmentation[r], cmap=_SEG_COLOURS, vmin=0, vmax=4, interpolation="nearest")
        ax_row[2].set_title("segmentation: bg/robot/gripper/object/goal", fontsize=8)
        for ax in ax_row:
            ax.axis("off")
    axes[0, 0].legend(loc="lower left", fontsize=6)
    fig.tight_layout()
    return fig


def plot_episode_strip(store: DemoStore, episode_index: int, n: int = 8) -> Figure:
    """``n`` evenly spaced frames of one episode, titled with progress."""
    ep = store.episodes.set_index("episode_index").loc[episode_index]
    rows = np.linspace(ep.start, ep.start + ep.length - 1, n).astype(int)
    fig, axes = plt.subplots(1, n, figsize=(1.6 * n, 2))
    for ax, r in zip(axes, rows):
        ax.imshow(store.frames[r])
        ax.set_title(f"{store.table.at[r, 'progress']:.2f}", fontsize=7)
        ax.axis("off")
    fig.suptitle(f"{ep.task}: \"{ep.instruction}\"", fontsize=8)
    return fig
