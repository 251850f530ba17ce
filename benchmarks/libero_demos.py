"""Cost of recording LIBERO demonstrations with ground truth; prints the measurement and the default profile's cost.

Runs in the main environment and records through .venv-libero (lib/vlm4vla/envs/LIBERO.md):

    MUJOCO_GL=egl nice -n 5 .venv/bin/python benchmarks/libero_demos.py --tasks 3,7 --episodes 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from vlm4vla.data.demos import DemoStore
from vlm4vla.envs.libero_datasheet import store_summary
from vlm4vla.envs.libero_demos import LiberoDemoConfig, generate_libero_demonstrations

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="libero_object")
    ap.add_argument("--tasks", default="3,7", help="comma-separated task ids")
    ap.add_argument("--episodes", type=int, default=2, help="official initial states 0..N-1 per task")
    ap.add_argument("--python", default=str(ROOT / ".venv-libero/bin/python"))
    args = ap.parse_args()
    cfg = LiberoDemoConfig(suite=args.suite, tasks=[int(t) for t in args.tasks.split(",")], episodes_per_task=args.episodes)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        store = DemoStore.open(generate_libero_demonstrations(cfg, Path(tmp) / "store", args.python))
        wall = time.time() - t0
        s = store_summary(store)
    n = len(cfg.tasks) * cfg.episodes_per_task
    print(f"\n{n} episodes ({len(cfg.tasks)} tasks x {cfg.episodes_per_task}), {s['n_frames']} frames, "
          f"expert success {s['expert_success']:.0%}")
    print(f"wall {wall:.0f} s (all included), {s['seconds_per_episode']:.1f} s per episode in the simulator, "
          f"{s['n_frames'] / n:.0f} frames per episode, store {s['store_mib']:.1f} MiB ({1024 * s['store_mib'] / s['n_frames']:.1f} KiB/frame)")
    print(f"object_px on the object {s['object_px_on_object']:.0%}, goal_px on the target {s['goal_px_on_goal']:.0%}")
    default = yaml.safe_load((ROOT / "profiles/default.yaml").read_text())["libero_demonstrations"]["demos"]
    n_default = len(default["tasks"]) * default["episodes_per_task"]
    per_task = (wall - n * s["seconds_per_episode"]) / len(cfg.tasks)  # environment start-up, recorder, writer
    minutes = (n_default * s["seconds_per_episode"] + len(default["tasks"]) * per_task) / 60
    print(f"default profile ({len(default['tasks'])} tasks x {default['episodes_per_task']}): about {minutes:.0f} min "
          f"({per_task:.0f} s per task outside episodes) and {n_default * s['store_mib'] / n:.0f} MiB at this rate")


if __name__ == "__main__":
    main()
