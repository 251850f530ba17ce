"""Throughput of the Meta-World harness at 64 px against the simulator's own render-only rate.

    nice .venv/bin/python benchmarks/bench_envs.py [--episodes 4] [--libero]
    nice .venv/bin/python benchmarks/bench_envs.py --census   # the table of lib/vlm4vla/envs/TASKS.md

Prints frames/s of: rendering alone (1 process, and 2 processes in parallel: the harness's
resources), step + render, demonstration generation (step, render, depth, segmentation), and
closed-loop evaluation with a trivial policy. Target: evaluation >= 70% of the render-only rate of
the same number of processes (TOOLCHAIN.md measured ~135 frames/s per process at 64 px).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time

import numpy as np

from vlm4vla.data.demos import DemoConfig, DemoStore, generate_demonstrations
from vlm4vla.envs import make_suite_config
from vlm4vla.evaluate import EvalConfig, NullPolicy, evaluate

TASK, SIZE, N_FRAMES = "button-press-topdown-v3", 64, 400


def simulator_rate(step: bool) -> float:
    """Frames/s of one process rendering (and optionally stepping) one environment."""
    from vlm4vla.envs.sim import TaskEnv

    env = TaskEnv(TASK, SIZE, "corner", 500)
    env.reset(0)
    zero = np.zeros(4)
    env.render()  # first render allocates buffers
    t0 = time.perf_counter()
    for i in range(N_FRAMES):
        if step:
            if env.steps >= 499:
                env.reset(0)
            env.step(zero)
        env.render()
    rate = N_FRAMES / (time.perf_counter() - t0)
    env.close()
    return rate


def parallel_rate(step: bool, processes: int) -> float:
    """Sum of the per-process rates of ``processes`` simultaneous processes."""
    with mp.get_context("spawn").Pool(processes) as pool:
        return float(sum(pool.map(simulator_rate, [step] * processes)))


def census_row(task: str, n_train: int = 5, n_eval: int = 10) -> str:
    """Expert, blind replay and null on one task, and object/goal pixels (a row of TASKS.md)."""
    from metaworld.policies import ENV_POLICY_MAP

    from vlm4vla.envs.sim import TaskEnv

    env, expert = TaskEnv(task, SIZE, "corner", 200), ENV_POLICY_MAP[task]()
    demos, wins = [], 0
    for v in range(n_train):
        env.reset(v)
        demos.append([])
        while env.steps < 200:
            demos[-1].append(expert.get_action(env.state))
            if env.step(demos[-1][-1])["success"]:
                wins += 1
                break
    blind = null = 0
    for j, v in enumerate(range(30, 30 + n_eval)):
        env.reset(v)
        blind += any(env.step(a)["success"] for a in demos[j % n_train])
        env.reset(v)
        null += any(env.step(np.array([0, 0, 0, -1.0]))["success"] for _ in range(50))
    env.reset(30)
    seg = env.ground_truth()["segmentation"]
    lengths = [len(d) for d in demos]
    env.close()
    return (f"| {task} | {wins}/{n_train} | {np.mean(lengths):.0f}/{max(lengths)} | {blind}/{n_eval} | {null}/{n_eval} "
            f"| {(seg == 3).sum()} | {(seg == 4).sum()} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=4, help="episodes per task (smoke suite)")
    parser.add_argument("--census", action="store_true", help="print the per-task table of TASKS.md")
    parser.add_argument("--libero", action="store_true", help="also LIBERO's rates (needs .venv-libero)")
    args = parser.parse_args()
    if args.census:
        from vlm4vla.envs import ALL_TASKS

        print("| task | expert | expert length mean/max | blind replay | null | object px | goal px |")
        for task in ALL_TASKS:
            print(census_row(task), flush=True)
        return
    suite = make_suite_config("smoke")
    render1, render2, step2 = simulator_rate(False), parallel_rate(False, 2), parallel_rate(True, 2)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = DemoStore.open(generate_demonstrations(suite, DemoConfig(args.episodes, seed=0), f"{tmp}/demos"))
        demo_rate = len(store) / (time.perf_counter() - t0)
    result = evaluate(NullPolicy(), suite, EvalConfig(episodes_per_task=args.episodes, envs_per_task=2, max_steps=100))
    # the default profile's evaluation: ten tasks, two environments each, i.e. ten per worker per round trip
    mt10 = evaluate(NullPolicy(), make_suite_config("mt10-vision"),
                    EvalConfig(episodes_per_task=2, envs_per_task=2, max_steps=100))
    print(f"render only, 1 process:          {render1:7.1f} frames/s")
    print(f"render only, 2 processes:        {render2:7.1f} frames/s")
    print(f"step + render, 2 processes:      {step2:7.1f} frames/s")
    print(f"demo generation (with GT, incl. start-up): {demo_rate:7.1f} frames/s")
    print(f"evaluation, null policy, 2 workers, smoke (2 slots per worker): {result['steps_per_s']:7.1f} frames/s "
          f"= {result['steps_per_s'] / render2:.0%} of render-only (target >= 70%)")
    print(f"evaluation, null policy, 2 workers, mt10-vision as in the default profile (10 slots per worker): "
          f"{mt10['steps_per_s']:7.1f} frames/s = {mt10['steps_per_s'] / render2:.0%} of render-only (target >= 70%)")
    if args.libero:
        libero_rates()


def libero_rates() -> None:
    """LIBERO (Benchmark 2): render-only and step+render of one LiberoTaskEnv, and the harness with a null policy."""
    import json
    import subprocess

    from vlm4vla.envs.libero_demos import _recorder_env
    from vlm4vla.envs.libero_eval import LiberoEvalConfig, LiberoNullPolicy, LiberoSuite, evaluate_libero, resolve_python

    python = resolve_python(".venv-libero/bin/python")
    probe = "import json; from vlm4vla.envs.libero_expert import measure_step_rate; print(json.dumps(measure_step_rate(n_steps=100)))"
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=_recorder_env())  # lib/ on its path
    one = json.loads(out.stdout.strip().splitlines()[-1])
    result = evaluate_libero(LiberoNullPolicy(), LiberoSuite(tasks=(0, 1, 2, 3), max_episode_steps=60),
                             LiberoEvalConfig(episodes_per_task=1))
    print(f"LIBERO render only, 1 process:   {one['render_fps']:7.1f} frames/s; step + render {one['steps_per_s']:7.1f}")
    print(f"LIBERO evaluation, null policy, 2 workers: {result['steps_per_s']:7.1f} frames/s "
          f"= {result['steps_per_s'] / (2 * one['render_fps']):.0%} of 2 x render-only")


if __name__ == "__main__":
    main()
