"""Environments stepped in worker processes, one batched request per step (both CPU cores busy).

Each slot is one TaskEnv living in one worker; slots are dealt round-robin to the workers. The
main process keeps the policy; workers only simulate and render. ``workers=0`` runs in-process
(for debugging and tiny tests). Workers are spawned, not forked: a forked EGL context is unusable.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from vlm4vla.envs.suite import SuiteConfig


class _LocalEnvs:
    """The worker's side: the TaskEnvs of some slots and the commands they answer."""

    def __init__(self, suite: SuiteConfig, slots: dict[int, str], ground_truth: bool) -> None:
        from vlm4vla.envs.sim import TaskEnv  # imported here: spawned workers set MUJOCO_GL first

        size, cam, steps = suite.image_size, suite.camera, suite.max_episode_steps
        self.envs = {s: TaskEnv(task, size, cam, steps) for s, task in slots.items()}
        self.ground_truth = ground_truth

    def reset(self, variations: dict[int, int]) -> dict[int, dict[str, Any]]:
        for slot, variation in variations.items():
            self.envs[slot].reset(variation)
        return {slot: self._observe(slot, {}) for slot in variations}

    def step(self, actions: dict[int, np.ndarray]) -> dict[int, dict[str, Any]]:
        return {slot: self._observe(slot, self.envs[slot].step(a)) for slot, a in actions.items()}

    def _observe(self, slot: int, info: dict[str, Any]) -> dict[str, Any]:
        env = self.envs[slot]
        obs = {"image": env.render(), "state": env.state.copy(), **info}
        if self.ground_truth:
            obs.update(env.ground_truth())
        return obs

    def close(self) -> None:
        for env in self.envs.values():
            env.close()


def _worker_main(conn: Connection, suite: SuiteConfig, slots: dict[int, str], ground_truth: bool) -> None:
    try:
        envs = _LocalEnvs(suite, slots, ground_truth)
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send("ready")
    while True:
        command, payload = conn.recv()
        if command == "close":
            envs.close()
            conn.close()
            return
        try:
            conn.send(getattr(envs, command)(payload))
        except Exception:  # hand the worker's traceback to the main process instead of dying silently
            conn.send(("error", traceback.format_exc()))


def _check(reply: Any) -> Any:
    """A worker's reply, or its traceback raised here."""
    if isinstance(reply, tuple) and reply and reply[0] == "error":
        raise RuntimeError(f"environment worker failed:\n{reply[1]}")
    return reply


class VectorEnvs:
    """Slots of TaskEnvs spread over ``workers`` processes; reset/step take and return {slot: ...}."""

    def __init__(self, suite: SuiteConfig, slot_tasks: list[str], workers: int = 2, ground_truth: bool = False) -> None:
        self.slot_tasks = slot_tasks
        n = max(1, min(workers, len(slot_tasks)))
        self.owner = {slot: slot % n for slot in range(len(slot_tasks))}
        shares = [{s: t for s, t in enumerate(slot_tasks) if self.owner[s] == w} for w in range(n)]
        self.local = _LocalEnvs(suite, shares[0], ground_truth) if workers == 0 else None
        self.conns: list[Connection] = []
        self.procs: list[mp.process.BaseProcess] = []
        if self.local is None:
            self._start(suite, shares, ground_truth)

    def _start(self, suite: SuiteConfig, shares: list[dict[int, str]], ground_truth: bool) -> None:
        ctx = mp.get_context("spawn")
        for share in shares:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, suite, share, ground_truth), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            _check(conn.recv())

    def reset(self, variations: dict[int, int]) -> dict[int, dict[str, Any]]:
        """Reset the given slots to the given variations; their first observations."""
        return self._call("reset", variations)

    def step(self, actions: dict[int, np.ndarray]) -> dict[int, dict[str, Any]]:
        """Step the given slots one action each; their observations with reward/success/truncated."""
        return self._call("step", actions)

    def _call(self, command: str, per_slot: dict[int, Any]) -> dict[int, dict[str, Any]]:
        if self.local is not None:
            return getattr(self.local, command)(per_slot)
        busy = []
        for w, conn in enumerate(self.conns):
            share = {s: v for s, v in per_slot.items() if self.owner[s] == w}
            if share:
                conn.send((command, share))
                busy.append(conn)
        out: dict[int, dict[str, Any]] = {}
        for conn in busy:  # workers run in parallel; collect after all were sent
            out.update(_check(conn.recv()))
        return out

    def close(self) -> None:
        """Stop the workers and free their renderers."""
        if self.local is not None:
            self.local.close()
        for conn, proc in zip(self.conns, self.procs):
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self.conns, self.procs = [], []

    def __enter__(self) -> "VectorEnvs":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
