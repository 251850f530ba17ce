"""The one episode loop: fixed jobs, vectorised environments, one batched policy call per step.

Used by evaluation (held-out variations, any policy) and by demonstration generation (train
variations, the scripted expert, ground truth on). What differs is passed in as callbacks.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from vlm4vla.constants import INSTRUCTION, OBS_IMAGE, OBS_STATE, TASK
from vlm4vla.envs.instructions import stable_hash, pick_instruction
from vlm4vla.envs.suite import SuiteConfig
from vlm4vla.envs.vector import VectorEnvs

ACTION_DIM = 4  # Meta-World: end-effector dx, dy, dz (x 1 cm) and gripper effort, all in [-1, 1]


@runtime_checkable
class Policy(Protocol):
    """What the harness calls. ``act`` returns (B, N, ACTION_DIM) float32 chunks, N = chunk_size."""

    chunk_size: int

    def reset(self) -> None:
        """Forget any state (called once before a run)."""

    def act(self, batch: dict[str, Any]) -> np.ndarray:
        """batch: OBS_IMAGE uint8 (B, H, W, 3), INSTRUCTION list[str], TASK list[str], OBS_STATE (B, 39)."""


@dataclass(frozen=True)
class Job:
    """One episode to run: the task, its index, the fixed initial state and the instruction."""

    task: str
    episode: int
    variation: int
    instruction: str


class Callback:
    """Hooks into the loop (recording videos, writing demonstrations); all no-ops by default."""

    def on_step(self, job: Job, obs: dict[str, Any], action: np.ndarray, step: int) -> None:
        """``obs`` is the observation the ``action`` was chosen from (frame ``step`` of the episode)."""

    def on_episode_end(self, job: Job, result: dict[str, Any]) -> None:
        """``result``: success, length, return."""


def make_jobs(suite: SuiteConfig, split: str, episodes_per_task: int, seed: int, instruction_split: str) -> list[Job]:
    """Episodes per task on ``split`` ("train"/"eval") variations, a deterministic function of ``seed``.

    Episode e of a task gets the e-th variation of a seeded permutation of the split (wrapping around
    when there are more episodes than variations) and a seeded paraphrase.
    """
    jobs = []
    variations = np.array(suite.variations(split))
    for task in suite.tasks:
        order = np.random.default_rng([seed, stable_hash(task)]).permutation(variations)
        for e in range(episodes_per_task):
            instruction = pick_instruction(task, instruction_split, seed, e)
            jobs.append(Job(task, e, int(order[e % len(order)]), instruction))
    return jobs


def run_episodes(policy: Policy, suite: SuiteConfig, jobs: list[Job], execute_k: int, workers: int = 2,
                 envs_per_task: int = 1, callbacks: Iterable[Callback] = (), ground_truth: bool = False,
                 desc: str = "episodes") -> tuple[list[dict[str, Any]], float]:
    """Run every job to success or the step limit; (per-episode results in job order, env steps/s)."""
    callbacks = list(callbacks)
    slot_tasks = [t for t in suite.tasks for _ in range(envs_per_task)]
    queues = {t: deque(j for j in jobs if j.task == t) for t in suite.tasks}
    results: dict[Job, dict[str, Any]] = {}
    policy.reset()
    with VectorEnvs(suite, slot_tasks, workers, ground_truth) as envs, tqdm(total=len(jobs), desc=desc, mininterval=5.0) as bar:  # few lines in notebooks
        loop = _Loop(policy, envs, execute_k, callbacks)
        loop.start({s: queues[t].popleft() for s, t in enumerate(slot_tasks) if queues[t]})
        t0 = time.perf_counter()
        while loop.active:
            for job, result in loop.step():
                results[job] = result
                bar.update(1)
            loop.start({s: queues[slot_tasks[s]].popleft() for s in loop.free if queues[slot_tasks[s]]})
        rate = loop.env_steps / max(time.perf_counter() - t0, 1e-9)
    return [results[j] for j in jobs], rate


class _Loop:
    """State of the running episodes: which job each slot runs, its planned actions, its last obs."""

    def __init__(self, policy: Policy, envs: VectorEnvs, execute_k: int, callbacks: list[Callback]) -> None:
        self.policy, self.envs, self.k, self.callbacks = policy, envs, execute_k, callbacks
        self.active: dict[int, Job] = {}
        self.obs: dict[int, dict[str, Any]] = {}
        self.plan: dict[int, deque] = {}
        self.tally: dict[int, list[float]] = {}  # slot -> [steps, return]
        self.free: list[int] = []
        self.env_steps = 0

    def start(self, jobs: dict[int, Job]) -> None:
        if not jobs:
            return
        self.obs.update(self.envs.reset({s: j.variation for s, j in jobs.items()}))
        for slot, job in jobs.items():
            self.active[slot], self.plan[slot], self.tally[slot] = job, deque(), [0, 0.0]
        self.free = [s for s in self.free if s not in jobs]

    def step(self) -> list[tuple[Job, dict[str, Any]]]:
        self._plan([s for s in self.active if not self.plan[s]])
        actions = {s: self.plan[s].popleft() for s in self.active}
        for slot, action in actions.items():
            for cb in self.callbacks:
                cb.on_step(self.active[slot], self.obs[slot], action, int(self.tally[slot][0]))
        self.obs.update(self.envs.step(actions))
        self.env_steps += len(actions)
        return [done for s in list(actions) if (done := self._account(s)) is not None]

    def _plan(self, slots: list[int]) -> None:
        """One batched policy call for every slot whose planned actions ran out."""
        if not slots:
            return
        jobs = [self.active[s] for s in slots]
        batch = {OBS_IMAGE: np.stack([self.obs[s]["image"] for s in slots]),  # (B, H, W, 3)
                 INSTRUCTION: [j.instruction for j in jobs], TASK: [j.task for j in jobs],
                 OBS_STATE: np.stack([self.obs[s]["state"] for s in slots])}  # (B, 39)
        chunks = np.asarray(self.policy.act(batch), dtype=np.float32)  # (B, N, A)
        if chunks.ndim != 3 or chunks.shape[0] != len(slots) or chunks.shape[2] != ACTION_DIM:
            raise ValueError(f"policy.act returned shape {chunks.shape}; expected ({len(slots)}, N, {ACTION_DIM})")
        for i, slot in enumerate(slots):
            self.plan[slot] = deque(chunks[i, : self.k])

    def _account(self, slot: int) -> tuple[Job, dict[str, Any]] | None:
        obs, tally = self.obs[slot], self.tally[slot]
        tally[0] += 1
        tally[1] += obs["reward"]
        if not (obs["success"] or obs["truncated"]):
            return None
        job = self.active.pop(slot)
        result = {"success": bool(obs["success"]), "length": int(tally[0]), "return": float(tally[1])}
        for cb in self.callbacks:
            cb.on_episode_end(job, result)
        self.free.append(slot)
        return job, result
