"""Closed-loop results kept next to the policy they measure, so a re-run notebook does not re-evaluate.

A stored result is reused only when the policy's weights (a hash of its safetensors files and
``policy.json``), the suite and the evaluation config all equal those it was computed with; any
difference evaluates afresh and replaces it. Evaluation is the costliest part of a run after
training (minutes per k on 2 cores), and a stage re-runs whenever a shared file or the run's
parameters change, so without this every such edit would redo every policy's evaluation.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vlm4vla.adapter import load_policy
from vlm4vla.envs import SuiteConfig, make_suite_config
from vlm4vla.envs.libero_eval import LiberoEvalConfig, LiberoSuite, evaluate_libero
from vlm4vla.envs.rollout import Callback
from vlm4vla.evaluate import EvalConfig, VideoRecorder, evaluate

__all__ = ["policy_fingerprint", "cached_evaluate", "benchmark_configs", "BENCHMARKS", "EpisodeCounter", "progress_path"]

BENCHMARKS = ("metaworld", "libero")
AnySuite = SuiteConfig | LiberoSuite
AnyEval = EvalConfig | LiberoEvalConfig


def benchmark_configs(suite: dict[str, Any], evaluation: dict[str, Any]) -> tuple[AnySuite, AnyEval]:
    """The suite and evaluation configs of a run's ``suite`` / ``evaluation`` parameters, at the first k.

    ``suite["benchmark"]`` picks the simulator: "metaworld" (default) or "libero"; ``suite["preset"]`` names the
    benchmark's task suite (a Meta-World preset, or a LIBERO suite such as "libero_object"), the other keys
    are SuiteConfig / LiberoSuite fields. ``evaluation`` holds the EvalConfig / LiberoEvalConfig fields plus
    ``execute_k`` (a list; the first is used here) and ``checkpoints`` (read by the notebook).
    """
    suite = dict(suite)
    benchmark = suite.pop("benchmark", "metaworld")
    fields = {k: v for k, v in evaluation.items() if k not in ("execute_k", "checkpoints")}
    k = list(evaluation["execute_k"])[0]
    if benchmark == "metaworld":
        return make_suite_config(suite.pop("preset"), **suite), EvalConfig(**fields, execute_k=k)
    if benchmark == "libero":
        return LiberoSuite(suite=suite.pop("preset"), **suite), LiberoEvalConfig(**fields, execute_k=k)
    raise ValueError(f"suite.benchmark={benchmark!r}: allowed is one of {BENCHMARKS}")

_HASHED = ("*.safetensors", "policy.json")


def policy_fingerprint(policy_dir: str | Path) -> str:
    """sha256 over the policy folder's weights and ``policy.json`` (names and bytes, sorted)."""
    root = Path(policy_dir)
    files = sorted({f for pattern in _HASHED for f in root.rglob(pattern)})
    if not files:
        raise FileNotFoundError(f"{root} holds no policy weights ({', '.join(_HASHED)}): not a saved policy")
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(root).as_posix().encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _key(policy_dir: Path, suite_cfg: AnySuite, eval_cfg: AnyEval) -> dict[str, Any]:
    key = {"policy": policy_fingerprint(policy_dir), "suite": suite_cfg.as_dict(), "eval": asdict(eval_cfg)}
    return json.loads(json.dumps(key))  # as it reads back from the file (tuples become lists)


def cached_evaluate(policy_dir: str | Path, suite_cfg: AnySuite, eval_cfg: AnyEval, cache_file: str | Path,
                    videos_dir: str | Path | None = None, videos_per_task: int = 0) -> tuple[dict[str, Any], bool]:
    """``evaluate`` (or ``evaluate_libero``) of the saved policy, or its stored result if nothing changed; (result, reused).

    A fresh evaluation empties ``videos_dir`` first (no stale GIFs of an earlier policy) and records
    ``videos_per_task`` episodes per task there; the result is written atomically to ``cache_file``.
    """
    policy_dir, cache_file = Path(policy_dir), Path(cache_file)
    key = _key(policy_dir, suite_cfg, eval_cfg)
    if cache_file.is_file():
        try:
            stored = json.loads(cache_file.read_text())
        except json.JSONDecodeError:
            stored = {}
        if stored.get("key") == key:
            return stored["result"], True
    callbacks: list[Callback] = [EpisodeCounter(progress_path(cache_file), eval_cfg.episodes_per_task * len(suite_cfg.tasks))]
    if videos_dir is not None and videos_per_task > 0:
        shutil.rmtree(videos_dir, ignore_errors=True)
        callbacks.append(VideoRecorder(videos_dir, n_per_task=videos_per_task))
    run = evaluate_libero if isinstance(suite_cfg, LiberoSuite) else evaluate
    result = run(load_policy(policy_dir), suite_cfg, eval_cfg, callbacks=callbacks)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.name}.tmp")
    tmp.write_text(json.dumps({"key": key, "result": result}, indent=1, default=str) + "\n")
    os.replace(tmp, cache_file)
    progress_path(cache_file).unlink(missing_ok=True)
    return json.loads(json.dumps(result, default=str)), False


def progress_path(cache_file: str | Path) -> Path:
    """Where a running evaluation of ``cache_file`` says how far it is (``vlm4vla progress`` reads it)."""
    cache_file = Path(cache_file)
    return cache_file.with_name(f"{cache_file.stem}.progress.json")


class EpisodeCounter(Callback):
    """Writes ``{"done": n, "total": N}`` to ``path`` after every finished episode (atomically), so a
    stage's evaluation progress is visible from outside its kernel."""

    def __init__(self, path: str | Path, total: int) -> None:
        self.path, self.total, self.done = Path(path), total, 0

    def on_episode_end(self, job: Any, result: dict[str, Any]) -> None:
        self.done += 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({"done": self.done, "total": self.total}))
        os.replace(tmp, self.path)
