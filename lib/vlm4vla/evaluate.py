"""The one closed-loop evaluation harness, its config, baselines and the video callback.

``evaluate(policy, suite_cfg, eval_cfg)`` runs ``episodes_per_task`` episodes per task from fixed
held-out initial states (a deterministic function of the seed), executes the first ``execute_k``
actions of every predicted chunk (the paper sweeps k over {N, N/2, 1}; report the k used), and
returns a plain dict with per-task and mean success and their 95% Wilson intervals.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from vlm4vla.constants import TASK
from vlm4vla.envs import ACTION_DIM, MAX_EPISODE_STEPS, Callback, ExpertPolicy, Job, Policy, SuiteConfig, make_jobs, run_episodes
from vlm4vla.envs.instructions import INSTRUCTION_SPLITS
from vlm4vla.stats import wilson_interval

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EvalConfig", "evaluate", "success_table", "Policy", "ExpertPolicy", "NullPolicy", "BlindReplayPolicy", "VideoRecorder"]


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate: episodes per task, seed, actions executed per prediction, paraphrase split."""

    episodes_per_task: int = 20  # 20 held-out variations per task (SuiteConfig.eval_variations)
    seed: int = 0
    execute_k: int = 1  # actions executed from each predicted chunk (<= the policy's chunk_size)
    instruction_split: str = "train"  # "heldout" measures generalisation to unseen paraphrases
    workers: int = 2  # environment processes (the machines have 2 cores)
    envs_per_task: int = 2  # concurrent episodes per task: larger policy batches
    max_steps: int | None = None  # None: the suite's max_episode_steps

    def __post_init__(self) -> None:
        for name, lo in (("episodes_per_task", 1), ("execute_k", 1), ("workers", 0), ("envs_per_task", 1)):
            if getattr(self, name) < lo:
                raise ValueError(f"EvalConfig.{name}={getattr(self, name)}: must be >= {lo}")
        if self.instruction_split not in INSTRUCTION_SPLITS:
            raise ValueError(f"EvalConfig.instruction_split={self.instruction_split!r}: allowed {INSTRUCTION_SPLITS}")
        if self.max_steps is not None and not 1 <= self.max_steps <= 500:
            raise ValueError(f"EvalConfig.max_steps={self.max_steps}: allowed None or 1..500")


def evaluate(policy: Policy, suite_cfg: SuiteConfig, eval_cfg: EvalConfig = EvalConfig(),
             callbacks: Iterable[Callback] = ()) -> dict[str, Any]:
    """Closed-loop success of ``policy`` on the suite's held-out initial states; a plain dict."""
    if eval_cfg.execute_k > policy.chunk_size:
        raise ValueError(f"EvalConfig.execute_k={eval_cfg.execute_k} exceeds the policy's chunk_size={policy.chunk_size}")
    suite = suite_cfg if eval_cfg.max_steps is None else replace(suite_cfg, max_episode_steps=eval_cfg.max_steps)
    jobs = make_jobs(suite, "eval", eval_cfg.episodes_per_task, eval_cfg.seed, eval_cfg.instruction_split)
    t0 = time.perf_counter()
    results, steps_per_s = run_episodes(policy, suite, jobs, eval_cfg.execute_k, eval_cfg.workers,
                                        eval_cfg.envs_per_task, callbacks, desc="evaluate")
    return _summarise(jobs, results, suite, eval_cfg, steps_per_s, time.perf_counter() - t0)


def _summarise(jobs: list[Job], results: list[dict[str, Any]], suite: SuiteConfig, cfg: EvalConfig,
               steps_per_s: float, seconds: float) -> dict[str, Any]:
    per_task: dict[str, dict[str, Any]] = {}
    episodes = [{**asdict(j), **r} for j, r in zip(jobs, results)]
    by_task = defaultdict(list)
    for ep in episodes:
        by_task[ep["task"]].append(ep)
    for task, eps in by_task.items():
        k, n = sum(e["success"] for e in eps), len(eps)
        lo, hi = wilson_interval(k, n)
        per_task[task] = {"successes": k, "n": n, "success_rate": k / n, "ci95": [lo, hi],
                          "mean_length": float(np.mean([e["length"] for e in eps])),
                          "variations": [e["variation"] for e in eps]}
    k_all, n_all = sum(e["success"] for e in episodes), len(episodes)
    lo, hi = wilson_interval(k_all, n_all)
    return {"mean_success": float(np.mean([t["success_rate"] for t in per_task.values()])),
            "overall": {"successes": k_all, "n": n_all, "ci95": [lo, hi]},
            "per_task": per_task, "episodes": episodes, "steps_per_s": steps_per_s, "seconds": seconds,
            "suite": suite.as_dict(), "eval": asdict(cfg)}


class NullPolicy:
    """No motion, gripper open: what an environment does on its own (should score ~0)."""

    chunk_size = 1

    def reset(self) -> None:
        """Stateless."""

    def act(self, batch: dict[str, Any]) -> np.ndarray:
        """(B, 1, 4) zeros with the gripper command at -1 (open)."""
        out = np.zeros((len(batch[TASK]), 1, ACTION_DIM), dtype=np.float32)
        out[..., 3] = -1.0
        return out


class BlindReplayPolicy:
    """Replays one training demonstration's actions for the same task, ignoring the image.

    Measures how much of a task can be done without looking: each call returns a whole demo, padded
    with "stay still" to ``chunk_size`` steps; run with ``execute_k=policy.chunk_size`` (open loop).
    """

    def __init__(self, actions_by_task: dict[str, list[np.ndarray]], seed: int = 0) -> None:
        self.actions_by_task = actions_by_task
        self.seed = seed
        # one chunk covers a whole episode, so each episode replays exactly one demo
        self.chunk_size = max(MAX_EPISODE_STEPS, *(len(a) for demos in actions_by_task.values() for a in demos))
        self._count: dict[str, int] = defaultdict(int)

    @classmethod
    def from_store(cls, store: Any, seed: int = 0) -> "BlindReplayPolicy":
        """From a DemoStore: every stored episode's (T, 4) actions, grouped by task."""
        by_task: dict[str, list[np.ndarray]] = defaultdict(list)
        for row in store.episodes.itertuples():
            by_task[row.task].append(store.actions[row.start : row.start + row.length])
        return cls(dict(by_task), seed)

    def reset(self) -> None:
        """Restart the deterministic choice of demonstrations."""
        self._count.clear()

    def act(self, batch: dict[str, Any]) -> np.ndarray:
        """(B, chunk_size, 4): a demo's actions padded with 'stay, gripper as last' after its end."""
        out = np.zeros((len(batch[TASK]), self.chunk_size, ACTION_DIM), dtype=np.float32)
        for i, task in enumerate(batch[TASK]):
            demos = self.actions_by_task[task]
            rng = np.random.default_rng([self.seed, self._count[task]])
            self._count[task] += 1
            demo = demos[int(rng.integers(len(demos)))]
            out[i, : len(demo)] = demo
            out[i, len(demo) :, 3] = demo[-1, 3]
        return out


class VideoRecorder(Callback):
    """Writes a GIF of the first ``n_per_task`` episodes of each task to ``out_dir``."""

    def __init__(self, out_dir: str | Path, n_per_task: int = 1, fps: int = 20) -> None:
        self.out_dir, self.n, self.fps = Path(out_dir), n_per_task, fps
        self.frames: dict[Job, list[np.ndarray]] = defaultdict(list)
        self.paths: list[Path] = []

    def on_step(self, job: Job, obs: dict[str, Any], action: np.ndarray, step: int) -> None:
        if job.episode < self.n:
            self.frames[job].append(obs["image"])

    def on_episode_end(self, job: Job, result: dict[str, Any]) -> None:
        import imageio.v2 as imageio

        frames = self.frames.pop(job, None)
        if not frames:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{job.task}_ep{job.episode:03d}_{'success' if result['success'] else 'fail'}.gif"
        imageio.mimsave(path, frames, duration=1000 / self.fps, loop=0)
        self.paths.append(path)


def success_table(results: dict[str, dict[str, Any]]) -> "pd.DataFrame":
    """Per-task success rates of several ``evaluate`` results side by side (columns: result names)."""
    import pandas as pd

    table = {name: {t: r["success_rate"] for t, r in res["per_task"].items()} for name, res in results.items()}
    frame = pd.DataFrame(table)
    frame.loc["mean"] = [res["mean_success"] for res in results.values()]
    return frame
