"""Closed-loop evaluation on LIBERO (Benchmark 2) with the harness's episode loop, environments in ``.venv-libero``.

``evaluate_libero(policy, suite, cfg)`` is ``vlm4vla.evaluate.evaluate`` for LIBERO: the same jobs
(task, episode, initial state, instruction), the same loop (``rollout._Loop``: one batched policy call
for every environment whose action chunk ran out, ``execute_k`` actions executed per chunk), the same
result dict (per-task and mean success, 95% Wilson intervals, every episode). What differs:

- environments are ``LiberoTaskEnv`` in worker processes started with the LIBERO interpreter
  (``libero_worker.py``; robosuite and mujoco 2.3.7 cannot live beside Meta-World's mujoco 3.3);
- initial states are the suite's official ones: episode e of a task uses the e-th entry of a seeded
  permutation of ``init_states`` (all 50 in the paper's LIBERO protocol; the default profile keeps
  those its demonstrations did not use);
- actions are 7-D (OSC_POSE deltas + gripper), the instruction is the task's official one, and the
  policy's ``OBS_STATE`` is the robot's proprio-state (39 values).

``LiberoExpertPolicy`` runs the scripted expert inside the workers (it needs privileged object poses),
so the harness's known answers (expert >= 0.7, null ~ 0) are measured through the same loop.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from tqdm.auto import tqdm

from vlm4vla.constants import INSTRUCTION, OBS_IMAGE, OBS_STATE, TASK
from vlm4vla.envs.libero import ACTION_DIM, MAX_STEPS, N_INIT_STATES, SUITES
from vlm4vla.envs.libero_demos import _recorder_env, libero_unavailable_reason
from vlm4vla.envs.instructions import stable_hash
from vlm4vla.envs.libero_worker import decode, encode, read_frame
from vlm4vla.envs.rollout import Callback, Job, Policy, _Loop
from vlm4vla.evaluate import _summarise

LIBERO_ACTION_DIM = ACTION_DIM  # OSC_POSE x, y, z, axis-angle (3), gripper (-1 open, +1 close)
EXPERT_ACTION = "expert_action"  # batch key filled only for LiberoExpertPolicy
N_TASKS = {"libero_spatial": 10, "libero_object": 10, "libero_goal": 10, "libero_10": 10, "libero_90": 90}
DEFAULT_PYTHON = ".venv-libero/bin/python"

__all__ = ["LiberoSuite", "LiberoEvalConfig", "evaluate_libero", "LiberoExpertPolicy", "LiberoNullPolicy", "LiberoBlindReplayPolicy",
           "LiberoVectorEnvs", "LIBERO_ACTION_DIM", "EXPERT_ACTION"]


def resolve_python(python: str | Path) -> Path:
    """The LIBERO interpreter: an absolute path as is; a relative one from the working directory, else from
    the repository root (notebooks run in ``notebooks/``, the profiles name ``.venv-libero/bin/python``)."""
    path = Path(python)
    if path.is_absolute() or path.exists():
        return path
    return Path(__file__).resolve().parents[3] / path


def _check(field: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{field}={value!r}: allowed is {allowed}")


@dataclass(frozen=True)
class LiberoSuite:
    """Which LIBERO tasks, at what resolution, from which camera, with which step limit."""

    suite: str = "libero_object"
    tasks: tuple[int, ...] = tuple(range(10))
    image_size: int = 64
    camera: str = "agentview"
    max_episode_steps: int | None = None  # None: the usual limit of the suite (OpenVLA / openpi scripts)
    settle_steps: int = 10  # no-op steps after reset, as the LIBERO evaluation scripts do (not counted)

    def __post_init__(self) -> None:
        _check("LiberoSuite.suite", self.suite, self.suite in SUITES, f"one of {SUITES}")
        object.__setattr__(self, "tasks", tuple(int(t) for t in self.tasks))
        n = N_TASKS[self.suite]
        bad = [t for t in self.tasks if not 0 <= t < n]
        _check("LiberoSuite.tasks", list(self.tasks), self.tasks and not bad and len(set(self.tasks)) == len(self.tasks),
               f"distinct task ids in 0..{n - 1} for {self.suite}")
        _check("LiberoSuite.image_size", self.image_size, 16 <= self.image_size <= 512, "16..512")
        _check("LiberoSuite.settle_steps", self.settle_steps, self.settle_steps >= 0, ">= 0")
        if self.max_episode_steps is not None:
            _check("LiberoSuite.max_episode_steps", self.max_episode_steps, self.max_episode_steps >= 1, "None or >= 1")

    @property
    def step_limit(self) -> int:
        return self.max_episode_steps or MAX_STEPS[self.suite]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able copy (result dicts); ``benchmark`` as in SuiteConfig, so analyses can tell them apart."""
        return {"benchmark": "libero", **asdict(self), "tasks": list(self.tasks), "max_episode_steps": self.step_limit}


@dataclass(frozen=True)
class LiberoEvalConfig:
    """Episodes per task from which official initial states, seed, k, workers."""

    episodes_per_task: int = 10
    init_states: tuple[int, int] = (40, 50)  # [first, stop) of the official states used; the paper protocol: (0, 50)
    seed: int = 0
    execute_k: int = 1
    workers: int = 2
    envs_per_task: int = 1
    python: str = DEFAULT_PYTHON  # the LIBERO interpreter (relative paths: from the working directory)

    def __post_init__(self) -> None:
        for name, lo in (("episodes_per_task", 1), ("execute_k", 1), ("workers", 1), ("envs_per_task", 1)):
            _check(f"LiberoEvalConfig.{name}", getattr(self, name), getattr(self, name) >= lo, f">= {lo}")
        lo, hi = (int(v) for v in self.init_states)
        object.__setattr__(self, "init_states", (lo, hi))
        _check("LiberoEvalConfig.init_states", [lo, hi], 0 <= lo < hi <= N_INIT_STATES,
               f"[first, stop) with 0 <= first < stop <= {N_INIT_STATES}")


class LiberoExpertPolicy:
    """The scripted pick-and-place expert (``libero.PickPlaceExpert``), computed in the workers."""

    chunk_size = 1
    needs_expert = True

    def reset(self) -> None:
        """Experts are reset with each episode, in the workers."""

    def act(self, batch: dict[str, Any]) -> np.ndarray:
        return np.asarray(batch[EXPERT_ACTION], np.float32)[:, None, :]


class LiberoNullPolicy:
    """No motion, gripper open (should score ~0)."""

    chunk_size = 1

    def reset(self) -> None:
        """Stateless."""

    def act(self, batch: dict[str, Any]) -> np.ndarray:
        out = np.zeros((len(batch[TASK]), 1, LIBERO_ACTION_DIM), np.float32)
        out[..., -1] = -1.0
        return out


class LiberoBlindReplayPolicy:
    """Replays one training demonstration's actions for the same task, ignoring the image (open loop).

    How much of a task needs no vision: each call returns a whole demonstration padded with "stay still,
    gripper as last" to ``chunk_size``; run with ``execute_k=chunk_size``. The demonstration for a task's
    n-th episode is a seeded choice, so the same seed replays the same demonstrations.
    (``vlm4vla.evaluate.BlindReplayPolicy`` is the Meta-World one, fixed to its 4-D actions.)
    """

    def __init__(self, actions_by_task: dict[str, list[np.ndarray]], step_limit: int, seed: int = 0) -> None:
        self.actions_by_task, self.seed = actions_by_task, seed
        self.chunk_size = max(step_limit, *(len(a) for demos in actions_by_task.values() for a in demos))
        self._count: dict[str, int] = defaultdict(int)

    @classmethod
    def from_store(cls, store: Any, step_limit: int, seed: int = 0) -> "LiberoBlindReplayPolicy":
        """Every stored episode's (T, 7) actions, grouped by task (a DemoStore of LIBERO demonstrations)."""
        by_task: dict[str, list[np.ndarray]] = defaultdict(list)
        for row in store.episodes.itertuples():
            by_task[row.task].append(np.asarray(store.actions[row.start : row.start + row.length], np.float32))
        return cls(dict(by_task), step_limit, seed)

    def reset(self) -> None:
        """Restart the seeded choice of demonstrations."""
        self._count.clear()

    def act(self, batch: dict[str, Any]) -> np.ndarray:
        out = np.zeros((len(batch[TASK]), self.chunk_size, LIBERO_ACTION_DIM), np.float32)
        for i, task in enumerate(batch[TASK]):
            if task not in self.actions_by_task:
                raise KeyError(f"no demonstrations of task {task!r} to replay; the store has {sorted(self.actions_by_task)}")
            demos = self.actions_by_task[task]
            pick = np.random.default_rng([self.seed, stable_hash(task), self._count[task]]).integers(len(demos))
            self._count[task] += 1
            demo = demos[int(pick)]
            out[i, : len(demo)] = demo
            out[i, len(demo) :, -1] = demo[-1, -1]
        return out


class LiberoVectorEnvs:
    """Slots of ``LiberoTaskEnv`` (one task id each) in ``workers`` LIBERO processes; the VectorEnvs interface."""

    def __init__(self, suite: LiberoSuite, slot_tasks: list[int], workers: int = 2, python: str | Path = DEFAULT_PYTHON,
                 expert: bool = False) -> None:
        python = resolve_python(python)
        reason = libero_unavailable_reason(python)
        if reason is not None:
            raise RuntimeError(f"LIBERO evaluation needs its interpreter: {reason}")
        n = max(1, min(workers, len(slot_tasks)))
        self.owner = {slot: slot % n for slot in range(len(slot_tasks))}
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Any] = []
        self.tasks: dict[int, dict[str, str]] = {}  # task id -> name and instruction, as the workers' envs read them
        for w in range(n):
            config = {**suite.as_dict(), "slots": {s: t for s, t in enumerate(slot_tasks) if self.owner[s] == w},
                      "expert": expert}
            log = tempfile.TemporaryFile("w+")
            cmd = [str(python), "-u", "-m", "vlm4vla.envs.libero_worker", json.dumps(config)]
            self.procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                               env=_recorder_env()))
            self.logs.append(log)
        for w in range(n):
            header, _ = self._receive(w)
            self.tasks.update({int(i["task_id"]): {"name": i["name"], "instruction": i["instruction"]}
                               for i in header["tasks"].values()})

    def reset(self, variations: dict[int, int]) -> dict[int, dict[str, Any]]:
        """Reset the given slots to the given official initial states (then settle); their observations."""
        return self._call("reset", variations, lambda slots, vals: ({"inits": [int(v) for v in vals]}, {}))

    def step(self, actions: dict[int, np.ndarray]) -> dict[int, dict[str, Any]]:
        """Step the given slots one 7-D action each; observations with reward / success / truncated."""
        return self._call("step", actions, lambda slots, vals: ({}, {"actions": np.stack(vals).astype(np.float32)}))

    def _call(self, command: str, per_slot: dict[int, Any], pack: Any) -> dict[int, dict[str, Any]]:
        busy = []
        for w, proc in enumerate(self.procs):
            slots = [s for s in per_slot if self.owner[s] == w]
            if slots:
                header, arrays = pack(slots, [per_slot[s] for s in slots])
                proc.stdin.write(encode({"command": command, "slots": slots, **header}, arrays))
                proc.stdin.flush()
                busy.append(w)
        out: dict[int, dict[str, Any]] = {}
        for w in busy:  # the workers run in parallel; collect after all were sent
            header, arrays = self._receive(w)
            for i, slot in enumerate(header["slots"]):
                out[slot] = {**{k: header[k][i] for k in ("reward", "success", "truncated")},
                             **{k: v[i] for k, v in arrays.items()}}
        return out

    def _receive(self, w: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        body = read_frame(self.procs[w].stdout)
        if body is None:
            raise RuntimeError(f"LIBERO worker {w} exited (status {self.procs[w].wait()}):\n{self._log_tail(w)}")
        header, arrays = decode(body)
        if "error" in header:
            raise RuntimeError(f"LIBERO worker {w} failed:\n{header['error']}")
        return header, arrays

    def _log_tail(self, w: int, lines: int = 20) -> str:
        self.logs[w].seek(0)
        return "".join(self.logs[w].readlines()[-lines:])

    def close(self) -> None:
        """Stop the workers (and their renderers)."""
        for proc in self.procs:
            try:
                proc.stdin.write(encode({"command": "close"}))
                proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
        for proc, log in zip(self.procs, self.logs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        self.procs, self.logs = [], []

    def __enter__(self) -> "LiberoVectorEnvs":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _LiberoLoop(_Loop):
    """The harness's episode loop with LIBERO's 7-D actions and the expert's actions in the batch."""

    def _plan(self, slots: list[int]) -> None:
        if not slots:
            return
        jobs = [self.active[s] for s in slots]
        batch = {OBS_IMAGE: np.stack([self.obs[s]["image"] for s in slots]),
                 INSTRUCTION: [j.instruction for j in jobs], TASK: [j.task for j in jobs],
                 OBS_STATE: np.stack([self.obs[s]["state"] for s in slots])}
        if EXPERT_ACTION in self.obs[slots[0]]:
            batch[EXPERT_ACTION] = np.stack([self.obs[s][EXPERT_ACTION] for s in slots])
        chunks = np.asarray(self.policy.act(batch), dtype=np.float32)
        if chunks.ndim != 3 or chunks.shape[0] != len(slots) or chunks.shape[2] != LIBERO_ACTION_DIM:
            raise ValueError(f"policy.act returned shape {chunks.shape}; expected ({len(slots)}, N, {LIBERO_ACTION_DIM})")
        for i, slot in enumerate(slots):
            self.plan[slot] = deque(chunks[i, : self.k])


def make_libero_jobs(suite: LiberoSuite, cfg: LiberoEvalConfig, names: dict[int, dict[str, str]]) -> list[Job]:
    """Episode e of each task: the e-th official initial state of a seeded permutation of ``cfg.init_states``."""
    inits = np.arange(*cfg.init_states)
    jobs = []
    for task in suite.tasks:
        order = np.random.default_rng([cfg.seed, task]).permutation(inits)
        jobs += [Job(names[task]["name"], e, int(order[e % len(order)]), names[task]["instruction"])
                 for e in range(cfg.episodes_per_task)]
    return jobs


def evaluate_libero(policy: Policy, suite: LiberoSuite = LiberoSuite(), cfg: LiberoEvalConfig = LiberoEvalConfig(),
                    callbacks: Iterable[Callback] = ()) -> dict[str, Any]:
    """Closed-loop success of ``policy`` on LIBERO: the result dict of ``vlm4vla.evaluate.evaluate``."""
    if cfg.execute_k > policy.chunk_size:
        raise ValueError(f"LiberoEvalConfig.execute_k={cfg.execute_k} exceeds the policy's chunk_size={policy.chunk_size}")
    slot_tasks = [t for t in suite.tasks for _ in range(cfg.envs_per_task)]
    results: dict[Job, dict[str, Any]] = {}
    callbacks = list(callbacks)
    policy.reset()
    t0 = time.perf_counter()
    with LiberoVectorEnvs(suite, slot_tasks, cfg.workers, cfg.python, getattr(policy, "needs_expert", False)) as envs:
        jobs = make_libero_jobs(suite, cfg, envs.tasks)
        by_name = {envs.tasks[t]["name"]: t for t in suite.tasks}
        queues = {t: deque(j for j in jobs if by_name[j.task] == t) for t in suite.tasks}
        bar = tqdm(total=len(jobs), desc=f"evaluate {suite.suite}", mininterval=5.0)
        loop = _LiberoLoop(policy, envs, cfg.execute_k, callbacks)
        loop.start({s: queues[t].popleft() for s, t in enumerate(slot_tasks) if queues[t]})
        t_loop = time.perf_counter()
        while loop.active:
            for job, result in loop.step():
                results[job] = result
                bar.update(1)
            loop.start({s: queues[slot_tasks[s]].popleft() for s in loop.free if queues[slot_tasks[s]]})
        rate = loop.env_steps / max(time.perf_counter() - t_loop, 1e-9)
        bar.close()
    return _summarise(jobs, [results[j] for j in jobs], suite, cfg, rate, time.perf_counter() - t0)

