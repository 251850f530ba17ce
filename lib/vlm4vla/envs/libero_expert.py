"""The scripted LIBERO expert: pick an object and place it in / on a target, from privileged simulator state.

``PickPlaceExpert`` reads object poses and shapes from a ``libero.LiberoTaskEnv`` (never its camera) and
answers 7-D OSC_POSE actions; ``run_expert_episode`` runs it from an official initial state, and
``measure_step_rate`` times it. How it grasps, and its success per suite, are in ``LIBERO.md``. Like
``libero.py``, it imports the simulator only through the environment, so it imports in both virtual
environments.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from vlm4vla.envs.libero import ACTION_DIM, LiberoTaskEnv, parse_pick_place


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
