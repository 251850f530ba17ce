"""Is a LIBERO policy's failure the harness's or the policy's? Checks on initial states it was trained on.

    .venv/bin/python benchmarks/libero_harness_check.py [--run lb-qwen-s-long-pretrained-s1] [--episodes 3]
        [--task 0] [--k 4]

For the first ``--episodes`` demonstrations of ``--task`` (official initial states the run was trained
on, not its held-out ones), through the evaluation harness's own LIBERO workers:

1. the first observation after reset and settle against the demonstration's first frame (a flipped or
   differently settled camera shows here as a non-zero pixel difference);
2. the demonstration's actions replayed open loop (the simulator and the action convention: must succeed);
3. the trained policy on the demonstration's frames, offline: mean absolute error of the arm's first
   action and agreement of the gripper's sign with the demonstration (how well it fitted what it saw);
4. the trained policy in closed loop from the same initial states, through ``evaluate_libero`` (the
   harness's own episode loop, ``--k`` actions per chunk, the suite's step limit): success and steps.

If 1 and 2 hold and 4 still fails, the harness is not the cause: the policy does not control the task
even where it was trained. Needs the run's DVC stage to have finished and ``.venv-libero``.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from vlm4vla.adapter.policy import load_policy
from vlm4vla.constants import INSTRUCTION, OBS_IMAGE
from vlm4vla.data.demos import DemoStore
from vlm4vla.envs.libero_eval import LiberoEvalConfig, LiberoSuite, LiberoVectorEnvs, evaluate_libero
from vlm4vla.pipeline.notebook import repo_root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="lb-qwen-s-long-pretrained-s1", help="a finished LIBERO run (artifacts/runs/RUN/policy)")
    p.add_argument("--demos", default="artifacts/libero-demonstrations")
    p.add_argument("--task", type=int, default=0, help="LIBERO task id of the demonstrations to check")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--k", type=int, default=4, help="actions executed per policy call")
    args = p.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    torch.set_num_threads(1)

    root = repo_root()
    policy_dir = root / "artifacts" / "runs" / args.run / "policy"
    if not policy_dir.is_dir():
        raise SystemExit(f"--run {args.run!r}: {policy_dir} is missing; run `vlm4vla repro --profile default` until it has finished")
    store = DemoStore.open(root / args.demos)
    episodes = store.episodes[store.episodes["task_id"] == args.task].head(args.episodes)
    if episodes.empty:
        raise SystemExit(f"--task {args.task}: no demonstrations of it in {args.demos} (tasks {sorted(store.episodes['task_id'].unique())})")
    policy = load_policy(policy_dir)
    if not 1 <= args.k <= policy.chunk_size:
        raise SystemExit(f"--k {args.k}: allowed is 1..{policy.chunk_size} (the policy's chunk size)")
    suite = LiberoSuite(suite=store.meta["suite"]["name"], tasks=(args.task,),
                        image_size=int(store.frames.shape[1]))

    inits = episodes["variation"].astype(int).tolist()
    if inits != list(range(inits[0], inits[0] + len(inits))):
        raise SystemExit(f"{args.demos}: task {args.task}'s first demonstrations use initial states {inits}, not a range")
    closed = {e["variation"]: (e["success"], e["length"]) for e in evaluate_libero(
        policy, suite, LiberoEvalConfig(episodes_per_task=len(inits), init_states=(inits[0], inits[-1] + 1),
                                        execute_k=args.k, workers=1))["episodes"]}

    print(f"{args.run} on task {args.task} ({episodes['instruction'].iloc[0]!r}), k={args.k}, step limit {suite.step_limit}")
    print("| initial state | first frame diff | demo replay | offline arm MAE | gripper agree | policy closed loop |")
    print("| --- | --- | --- | --- | --- | --- |")
    with LiberoVectorEnvs(suite, [args.task], workers=1) as envs:
        for row in episodes.itertuples():
            frames = np.asarray(store.frames[row.start : row.start + row.length])
            actions = store.actions[row.start : row.start + row.length]
            first = envs.reset({0: int(row.variation)})[0]
            diff = np.abs(first["image"].astype(int) - frames[0].astype(int)).mean()
            replay = _replay(envs, int(row.variation), actions)
            pred = np.concatenate([policy.act({OBS_IMAGE: frames[i : i + 32], INSTRUCTION: [row.instruction] * len(frames[i : i + 32])})
                                   for i in range(0, len(frames), 32)])
            mae = np.abs(pred[:, 0, :-1] - actions[:, :-1]).mean()
            agree = (np.sign(pred[:, 0, -1]) == np.sign(actions[:, -1])).mean()
            print(f"| {row.variation} | {diff:.2f} | {_verdict(replay)} | {mae:.3f} | {agree:.2f} | "
                  f"{_verdict(closed[int(row.variation)])} |", flush=True)


def _replay(envs: LiberoVectorEnvs, init: int, actions: np.ndarray) -> tuple[bool, int]:
    """Reset to ``init`` and step the recorded ``actions`` open loop until success: (success, steps)."""
    envs.reset({0: init})
    for t, action in enumerate(actions, 1):
        if envs.step({0: action})[0]["success"]:
            return True, t
    return False, len(actions)


def _verdict(result: tuple[bool, int]) -> str:
    return f"{'success' if result[0] else 'failure'} ({result[1]} steps)"


if __name__ == "__main__":
    main()
