"""Scripted-expert demonstrations with simulator ground truth: generation, storage and reading.

Layout of a store (open formats, memory-mappable; FORMAT_VERSION in meta.json):
    frames.npy        uint8   (F, H, W, 3)  RGB from the suite's camera, oriented upright
    depth.npy         float16 (F, H, W)     metres along the camera axis (MuJoCo depth buffer)
    segmentation.npy  uint8   (F, H, W)     class ids, map in meta.json["segmentation_classes"]
    frames.parquet    one row per frame: episode_index, frame_index, task, instruction, variation,
                      action[4], state[39] (privileged), ee_pos[3], gripper_opening (0 closed..1 open),
                      gripper_open, object_pos[3], objects_pos[3k], goal_pos[3], gripper_px[2],
                      object_px[2], goal_px[2] (pixel x=column, y=row), reward (Meta-World's shaped
                      reward, 0..10, for reaching this frame's state; 0 at frame 0), progress
                      (frame_index / episode length)
    episodes.parquet  episode_index, task, instruction, variation, job_episode, start, length, return
    meta.json, DATASHEET.md
Row r of every .npy is row r of frames.parquet. Only successful expert episodes are stored; the
expert's success over all attempts is in meta.json and the datasheet.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vlm4vla.envs import ACTION_DIM, Callback, ExpertPolicy, Job, SuiteConfig, make_jobs, run_episodes
from vlm4vla.envs.ground_truth import SEGMENTATION_CLASSES
from vlm4vla.data.datasheet import write_datasheet

FORMAT_VERSION = 1
ARRAYS = {"frames": np.uint8, "depth": np.float16, "segmentation": np.uint8}
REGENERATE = "regenerate it with vlm4vla.data.demos.generate_demonstrations (notebook 00-demonstrations)"
_SCALARS = ("gripper_opening", "gripper_open", "reward")
_VECTORS = ("ee_pos", "object_pos", "objects_pos", "goal_pos", "gripper_px", "object_px", "goal_px")


@dataclass(frozen=True)
class DemoConfig:
    """How many expert episodes per task, from which seed, in how many processes."""

    episodes_per_task: int = 30  # = the 30 train variations, each used once (pilot, TOOLCHAIN.md)
    seed: int = 0
    workers: int = 2
    envs_per_task: int = 1

    def __post_init__(self) -> None:
        for name, lo in (("episodes_per_task", 1), ("workers", 0), ("envs_per_task", 1)):
            if getattr(self, name) < lo:
                raise ValueError(f"DemoConfig.{name}={getattr(self, name)}: must be >= {lo}")


class DemoStoreError(RuntimeError):
    """A demonstration store is missing or damaged (the message names the file and the fix)."""


class _Recorder(Callback):
    """Buffers each episode's frames; appends successful ones to raw files and row lists."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.files = {name: open(tmp / f"{name}.raw", "wb") for name in ARRAYS}
        self.buffers: dict[Job, list[tuple[dict[str, Any], np.ndarray]]] = {}
        self.rows: list[dict[str, Any]] = []
        self.episodes: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        self.shape: tuple[int, ...] = ()

    def on_step(self, job: Job, obs: dict[str, Any], action: np.ndarray, step: int) -> None:
        self.buffers.setdefault(job, []).append((obs, np.asarray(action, dtype=np.float32)))

    def on_episode_end(self, job: Job, result: dict[str, Any]) -> None:
        steps = self.buffers.pop(job)
        self.attempts.append({"task": job.task, "success": result["success"], "length": result["length"]})
        if result["success"]:
            self._write(job, steps, result)

    def _write(self, job: Job, steps: list[tuple[dict[str, Any], np.ndarray]], result: dict[str, Any]) -> None:
        index, start, n = len(self.episodes), len(self.rows), len(steps)
        self.shape = steps[0][0]["image"].shape[:2]
        for name, key in (("frames", "image"), ("depth", "depth"), ("segmentation", "segmentation")):
            self.files[name].write(np.stack([o[key] for o, _ in steps]).astype(ARRAYS[name]).tobytes())
        for t, (obs, action) in enumerate(steps):
            self.rows.append(_frame_row(index, t, n, job, obs, action))
        self.episodes.append({"episode_index": index, "task": job.task, "instruction": job.instruction,
                              "variation": job.variation, "job_episode": job.episode, "start": start,
                              "length": n, "return": result["return"]})

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def _frame_row(index: int, t: int, n: int, job: Job, obs: dict[str, Any], action: np.ndarray) -> dict[str, Any]:
    row = {"episode_index": index, "frame_index": t, "task": job.task, "instruction": job.instruction,
           "variation": job.variation, "action": action.tolist(), "state": np.asarray(obs["state"]).tolist(),
           "progress": t / n}
    row.update({k: (bool(obs[k]) if k == "gripper_open" else float(obs.get(k, 0.0))) for k in _SCALARS})
    row.update({k: np.asarray(obs[k], dtype=np.float32).tolist() for k in _VECTORS})
    return row


def generate_demonstrations(suite_cfg: SuiteConfig, demo_cfg: DemoConfig, out_dir: str | Path) -> Path:
    """Roll out the scripted experts on the train variations and write a DemoStore at ``out_dir``.

    Written to a temporary folder next to ``out_dir`` and renamed at the end, so an interrupted run
    leaves the previous store (or nothing), never a half-written one. Same configs -> same files.
    """
    out = Path(out_dir)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        jobs = make_jobs(suite_cfg, "train", demo_cfg.episodes_per_task, demo_cfg.seed, suite_cfg.instruction_split)
        recorder = _Recorder(tmp)
        try:
            run_episodes(ExpertPolicy(), suite_cfg, jobs, 1, demo_cfg.workers, demo_cfg.envs_per_task,
                         [recorder], ground_truth=True, desc="demonstrations")
        finally:
            recorder.close()
        _finalise(tmp, recorder, suite_cfg, demo_cfg)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _finalise(tmp: Path, rec: _Recorder, suite: SuiteConfig, cfg: DemoConfig) -> None:
    """Raw appends -> .npy, rows -> parquet, meta.json and DATASHEET.md."""
    if not rec.rows:
        raise RuntimeError(f"the expert succeeded in none of {len(rec.attempts)} episodes: nothing to store")
    n, (h, w) = len(rec.rows), rec.shape
    shapes = {"frames": (n, h, w, 3), "depth": (n, h, w), "segmentation": (n, h, w)}
    for name, dtype in ARRAYS.items():
        raw = np.memmap(tmp / f"{name}.raw", dtype=dtype, mode="r", shape=shapes[name])
        out = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=shapes[name])
        out[:] = raw
        out.flush()
        del raw, out
        (tmp / f"{name}.raw").unlink()
    pq.write_table(pa.Table.from_pylist(rec.rows), tmp / "frames.parquet")
    pq.write_table(pa.Table.from_pylist(rec.episodes), tmp / "episodes.parquet")
    meta = _meta(rec, suite, cfg, n)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    actions = np.array([r["action"] for r in rec.rows], dtype=np.float32)
    write_datasheet(tmp / "DATASHEET.md", meta, pd.DataFrame(rec.episodes), actions)


def _meta(rec: _Recorder, suite: SuiteConfig, cfg: DemoConfig, n_frames: int) -> dict[str, Any]:
    attempts = pd.DataFrame(rec.attempts)
    expert = attempts.groupby("task")["success"].agg(["sum", "count"])
    return {"format_version": FORMAT_VERSION, "suite": suite.as_dict(), "demos": asdict(cfg),
            "image_size": suite.image_size, "camera": suite.camera, "action_dim": ACTION_DIM,
            "n_frames": n_frames, "n_episodes": len(rec.episodes),
            "segmentation_classes": {str(k): v for k, v in SEGMENTATION_CLASSES.items()},
            "depth": "float16 metres from the camera plane (MuJoCo depth, linearised); far plane (~100 m) where nothing is hit",
            "pixels": "(x, y) = (column, row); origin at the top-left corner of the top-left pixel",
            "expert_success": {t: {"successes": int(r["sum"]), "attempts": int(r["count"])} for t, r in expert.iterrows()}}


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp`` with renames only (atomic on one file system)."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class DemoStore:
    """A read-only, memory-mapped demonstration store. Open with ``DemoStore.open(path)``."""

    path: Path
    frames: np.ndarray  # (F, H, W, 3) uint8 memmap
    depth: np.ndarray  # (F, H, W) float16 memmap, metres
    segmentation: np.ndarray  # (F, H, W) uint8 memmap, ids in meta["segmentation_classes"]
    table: pd.DataFrame  # one row per frame
    episodes: pd.DataFrame  # one row per episode
    actions: np.ndarray  # (F, 4) float32
    meta: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> "DemoStore":
        """Open the store at ``path``; a DemoStoreError names any missing or damaged file."""
        path = Path(path)
        if not path.is_dir():
            raise DemoStoreError(f"no demonstration store at {path}; {REGENERATE}")
        meta = _read(path / "meta.json", lambda p: json.loads(p.read_text()))
        if meta.get("format_version") != FORMAT_VERSION:
            raise DemoStoreError(f"{path / 'meta.json'}: format_version {meta.get('format_version')} != {FORMAT_VERSION}; {REGENERATE}")
        arrays = {name: _read(path / f"{name}.npy", lambda p: np.load(p, mmap_mode="r")) for name in ARRAYS}
        table = _read(path / "frames.parquet", lambda p: pq.read_table(p).to_pandas())
        episodes = _read(path / "episodes.parquet", lambda p: pq.read_table(p).to_pandas())
        for name, arr in arrays.items():
            if arr.shape[0] != len(table) or arr.dtype != ARRAYS[name]:
                raise DemoStoreError(f"{path / (name + '.npy')}: {arr.shape} {arr.dtype} does not match {len(table)} rows of frames.parquet; {REGENERATE}")
        actions = np.stack(table["action"].to_numpy()).astype(np.float32) if len(table) else np.zeros((0, ACTION_DIM), np.float32)
        return cls(path, arrays["frames"], arrays["depth"], arrays["segmentation"], table, episodes, actions, meta)

    def __len__(self) -> int:
        return len(self.table)


def _read(path: Path, loader: Any) -> Any:
    if not path.exists():
        raise DemoStoreError(f"{path} is missing; {REGENERATE}")
    try:
        return loader(path)
    except Exception as err:  # any parse failure means a damaged file: say which, not a deep trace
        raise DemoStoreError(f"{path} is damaged ({type(err).__name__}: {err}); {REGENERATE}") from None
