"""One Meta-World task in one MuJoCo model, with a tuned offscreen renderer and simulator ground truth.

Rendering is ours, not gymnasium's, so demonstration frames and evaluation frames come from the same
code (one camera, one size, one flip). Renderer settings from TOOLCHAIN.md: shadows, multisampling
and reflections off on the model before the first render (6-15 -> ~135 frames/s at 64 px on CPU).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless; must be set before mujoco is imported

from functools import lru_cache  # noqa: E402
from typing import Any  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from metaworld.env_dict import ALL_V3_ENVIRONMENTS  # noqa: E402

from vlm4vla.envs.ground_truth import project_points, segmentation_classes  # noqa: E402
from vlm4vla.envs.suite import N_VARIATIONS, VARIATION_SEED  # noqa: E402

FLIPPED_CAMERAS = ("corner", "corner2", "corner3", "corner4")  # mounted upside down (TOOLCHAIN.md)
GRIPPER_OPEN_THRESHOLD = 0.5  # normalised finger distance (0 closed .. 1 open) above which "open"


class TaskEnv:
    """A reusable Meta-World environment for one task (creating a renderer costs ~1.3 s)."""

    def __init__(self, task: str, image_size: int, camera: str, max_episode_steps: int) -> None:
        self.task, self.camera, self.size = task, camera, image_size
        self.env = _make_raw_env(task)
        self.env.max_path_length = max_episode_steps
        _tune_model(self.env.model)
        self.renderer = mujoco.Renderer(self.env.model, image_size, image_size)
        self.flip = camera in FLIPPED_CAMERAS
        self._classes = segmentation_classes(self.env.model)
        self.state: np.ndarray = np.zeros(39)
        self.steps = 0

    def reset(self, variation: int) -> None:
        """Reset to the fixed initial state of ``variation`` (object and goal positions)."""
        self.env._last_rand_vec = variation_table(self.task)[variation].copy()
        self.env._freeze_rand_vec = True
        self.state, _ = self.env.reset()
        self.steps = 0

    def step(self, action: np.ndarray) -> dict[str, Any]:
        """Apply one 4-D action; returns reward, success and whether the episode hit its step limit."""
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.state, reward, _, truncated, info = self.env.step(action)
        self.steps += 1
        return {"reward": float(reward), "success": bool(info["success"]), "truncated": bool(truncated)}

    def render(self) -> np.ndarray:
        """RGB frame, uint8 (H, W, 3)."""
        self.renderer.update_scene(self.env.data, camera=self.camera)
        return self._orient(self.renderer.render())

    def ground_truth(self) -> dict[str, Any]:
        """Depth (metres, float16), segmentation classes (uint8), positions and pixel projections."""
        r = self.renderer
        r.enable_depth_rendering()
        r.update_scene(self.env.data, camera=self.camera)
        depth = self._orient(r.render()).astype(np.float16)  # (H, W) metres from the camera plane
        r.disable_depth_rendering()
        r.enable_segmentation_rendering()
        r.update_scene(self.env.data, camera=self.camera)
        seg = self._orient(r.render())  # (H, W, 2): object id, object type
        r.disable_segmentation_rendering()
        return {"depth": depth, "segmentation": self._classes.lookup(seg), **self.positions()}

    def positions(self) -> dict[str, Any]:
        """End-effector, gripper, object and goal positions (world frame, metres) and their pixels."""
        e = self.env
        objects = np.asarray(e._get_pos_objects(), dtype=np.float64).reshape(-1, 3)
        goal = np.asarray(e._get_pos_goal(), dtype=np.float64)
        points = np.stack([e.tcp_center, objects[0], goal])
        pixels = project_points(e.model, e.data, self.camera, points, self.size, self.flip)
        opening = float(self.state[3])
        return {"ee_pos": points[0], "gripper_opening": opening, "gripper_open": opening > GRIPPER_OPEN_THRESHOLD,
                "object_pos": objects[0], "objects_pos": objects.ravel(), "goal_pos": goal,
                "gripper_px": pixels[0], "object_px": pixels[1], "goal_px": pixels[2]}

    def _orient(self, img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(img[::-1, ::-1]) if self.flip else img

    def close(self) -> None:
        """Free the renderer's GL context."""
        self.renderer.close()
        self.env.close()


def _make_raw_env(task: str) -> Any:
    """The Meta-World env class with the goal observable (the scripted experts read it from the state)."""
    env = ALL_V3_ENVIRONMENTS[task]()
    env._set_task_called = True
    env._partially_observable = False
    env.__dict__.pop("sawyer_observation_space", None)  # cached property: recompute with the goal
    return env


def _tune_model(model: mujoco.MjModel) -> None:
    """Cheap rendering (TOOLCHAIN.md): must happen before the renderer's context is created."""
    model.vis.quality.shadowsize = 0
    model.vis.quality.offsamples = 0
    model.light_castshadow[:] = 0
    model.mat_reflectance[:] = 0


@lru_cache(maxsize=None)
def variation_table(task: str) -> np.ndarray:
    """The task's ``N_VARIATIONS`` initial-state vectors, drawn with Meta-World's own sampler.

    Meta-World re-samples inside ``reset`` until object and goal are far enough apart, so we let it
    reset with a seeded generator and keep the accepted vectors (as ``metaworld._make_tasks`` does).
    """
    env = _make_raw_env(task)
    env._freeze_rand_vec, env.seeded_rand_vec = False, True
    env.seed(VARIATION_SEED)
    table = []
    for _ in range(N_VARIATIONS):
        env.reset()
        table.append(np.array(env._last_rand_vec, dtype=np.float64))
    env.close()
    return np.stack(table)
