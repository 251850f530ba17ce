"""Simulator ground truth for probes and auxiliary tasks: segmentation classes and pixel projections.

Segmentation ids (uint8), the same for every task:
    0 background (floor, table, walls, sky)   1 robot arm   2 gripper (hand, fingers, pads)
    3 task object (every body of the task's fixture and objects)   4 goal (geoms/sites named *goal*)
Pixel coordinates are (x, y) = (column, row) in the oriented image, origin at the top-left corner of
the top-left pixel, so pixel (row i, column j) covers [j, j+1) x [i, i+1).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

SEGMENTATION_CLASSES = {0: "background", 1: "robot", 2: "gripper", 3: "task_object", 4: "goal"}
BACKGROUND, ROBOT, GRIPPER, TASK_OBJECT, GOAL = range(5)
_SCENE_BODIES = ("world", "tablelink", "RetainingWall")  # from metaworld's shared xml: scene, not task
_ROBOT_ROOT, _GRIPPER_ROOT = "base", "hand"


@dataclass(frozen=True)
class SegmentationClasses:
    """Lookup from MuJoCo's (object id, object type) segmentation to SEGMENTATION_CLASSES ids."""

    geom: np.ndarray  # (ngeom,) uint8
    site: np.ndarray  # (nsite,) uint8

    def lookup(self, seg: np.ndarray) -> np.ndarray:
        """(H, W, 2) int32 MuJoCo segmentation -> (H, W) uint8 class ids."""
        ids, types = seg[..., 0], seg[..., 1]
        out = np.zeros(ids.shape, dtype=np.uint8)
        geoms = (types == mujoco.mjtObj.mjOBJ_GEOM) & (ids >= 0)
        sites = (types == mujoco.mjtObj.mjOBJ_SITE) & (ids >= 0)
        out[geoms] = self.geom[ids[geoms]]
        out[sites] = self.site[ids[sites]]
        return out


def segmentation_classes(model: mujoco.MjModel) -> SegmentationClasses:
    """Class of every geom and site of ``model``, decided by its body and name."""
    bodies = np.array([_body_class(model, b) for b in range(model.nbody)], dtype=np.uint8)
    geom = bodies[model.geom_bodyid].copy()
    site = bodies[model.site_bodyid].copy()
    for i in range(model.ngeom):
        if "goal" in model.geom(i).name.lower():
            geom[i] = GOAL
    for i in range(model.nsite):
        if "goal" in model.site(i).name.lower():
            site[i] = GOAL
    return SegmentationClasses(geom=geom, site=site)


def _body_class(model: mujoco.MjModel, body: int) -> int:
    names = _ancestor_names(model, body)
    if names[0] in _SCENE_BODIES or names[-2:-1] == ["mocap"] or names[0] == "mocap":
        return BACKGROUND
    if _GRIPPER_ROOT in names:
        return GRIPPER
    if _ROBOT_ROOT in names:
        return ROBOT
    if any("goal" in n.lower() for n in names):
        return GOAL
    return TASK_OBJECT


def _ancestor_names(model: mujoco.MjModel, body: int) -> list[str]:
    """Names from ``body`` up to (excluding) the world body; ["world"] for the world itself."""
    names = []
    while body != 0:
        names.append(model.body(body).name)
        body = int(model.body_parentid[body])
    return names or ["world"]


def camera_matrices(model: mujoco.MjModel, data: mujoco.MjData, camera: str, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K (3, 3) intrinsics in pixels, R (3, 3) camera-to-world rotation, t (3,) camera position)."""
    cam = model.camera(camera).id
    focal = 0.5 * size / np.tan(np.deg2rad(model.cam_fovy[cam]) / 2)  # square image: fovy = fovx
    K = np.array([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]])
    return K, data.cam_xmat[cam].reshape(3, 3).copy(), data.cam_xpos[cam].copy()


def project_points(model: mujoco.MjModel, data: mujoco.MjData, camera: str, points: np.ndarray, size: int, flip: bool) -> np.ndarray:
    """World points (P, 3) -> pixel (x, y) (P, 2) float32 in the image as rendered and oriented."""
    K, R, t = camera_matrices(model, data, camera, size)
    cam = (np.asarray(points) - t) @ R  # (P, 3) in camera axes: x right, y up, looking down -z
    depth = -cam[:, 2]
    x = K[0, 2] + K[0, 0] * cam[:, 0] / depth
    y = K[1, 2] - K[1, 1] * cam[:, 1] / depth
    pixels = np.stack([x, y], axis=1)
    return (size - pixels if flip else pixels).astype(np.float32)  # 180-degree rotation
