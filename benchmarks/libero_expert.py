"""Success of the scripted LIBERO pick-and-place expert on official initial states; prints a per-task table.

Runs in the LIBERO environment only (see lib/vlm4vla/envs/LIBERO.md):

    MUJOCO_GL=egl nice -n 10 .venv-libero/bin/python benchmarks/libero_expert.py \
        --suite libero_object --inits 5 --image-size 64 --json reports/libero_expert_object.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))  # vlm4vla is not installed in .venv-libero

from vlm4vla.envs import libero as L  # noqa: E402
from vlm4vla.envs.libero_expert import PickPlaceExpert, measure_step_rate, run_expert_episode  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="libero_object")
    ap.add_argument("--tasks", default="all", help="comma-separated task ids or 'all'")
    ap.add_argument("--inits", type=int, default=5, help="official initial states 0..N-1 per task")
    ap.add_argument("--init-offset", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--no-render", action="store_true", help="no camera (the expert needs none; ~2.5x faster)")
    ap.add_argument("--measure-fps", action="store_true", help="only measure steps/s (64 / 128 px, tuned or not, no camera)")
    ap.add_argument("--json", default=None, help="write per-episode results here")
    args = ap.parse_args()

    if args.measure_fps:
        print("| camera | renderer | steps/s (expert actions) | render-only frames/s |\n| --- | --- | --- | --- |")
        for size, tune, render in ((64, True, True), (128, True, True), (64, False, True), (128, False, True),
                                   (64, True, False)):
            r = measure_step_rate(args.suite, 0, size, tune, render)
            cam = f"agentview {size} px" if render else "none"
            print(f"| {cam} | {'tuned' if tune else 'default'} | {r['steps_per_s']:.1f} | "
                  f"{r.get('render_fps', float('nan')):.1f} |", flush=True)
        return
    tasks = range(L.n_tasks(args.suite)) if args.tasks == "all" else [int(t) for t in args.tasks.split(",")]
    rows, episodes = [], []
    t_all = time.time()
    for tid in tasks:
        env = L.LiberoTaskEnv(args.suite, tid, image_size=args.image_size, render=not args.no_render)
        expert = PickPlaceExpert()
        wins, steps, secs = 0, 0, 0.0
        for i in range(args.init_offset, args.init_offset + args.inits):
            try:
                r = run_expert_episode(env, i, expert)
            except ValueError as e:  # goal the expert does not handle
                r = {"success": False, "steps": 0, "phase": f"unsupported: {e}", "seconds": 0.0}
            wins += r["success"]
            steps += r["steps"]
            secs += r["seconds"]
            episodes.append({"suite": args.suite, "task_id": tid, "task": env.name, "init": i, **r})
            print(f"  task {tid} init {i}: {'ok  ' if r['success'] else 'FAIL'} steps {r['steps']:3d} "
                  f"phase {r['phase']}", flush=True)
        rows.append((tid, env.instruction, wins, args.inits, steps / max(args.inits, 1), steps / max(secs, 1e-9)))
        env.close()

    print(f"\n{args.suite}: scripted expert, {args.inits} official initial states per task, " +
          ("no camera" if args.no_render else f"{args.image_size} px agentview rendered every step") + "\n")
    print(f"| task | instruction | success | mean steps | steps/s |\n| --- | --- | --- | --- | --- |")
    for tid, instr, w, n, ms, sps in rows:
        print(f"| {tid} | {instr} | {w}/{n} | {ms:.0f} | {sps:.1f} |")
    total = sum(r[2] for r in rows)
    n_all = sum(r[3] for r in rows)
    print(f"| all | | {total}/{n_all} ({100 * total / max(n_all, 1):.1f}%) | | |")
    print(f"\nwall time {time.time() - t_all:.0f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "episodes": episodes}, indent=1, default=float))


if __name__ == "__main__":
    main()
