"""Is the default profile's LIBERO training budget what keeps its policies at 0% success?

    .venv/bin/python benchmarks/libero_budget.py [--run lb-qwen-s-long-pretrained-s0] [--steps 6000 9000]
        [--episodes-per-task 3] [--workers 1]

The default profile trains every LIBERO run for the Meta-World budget (3000 steps of batch 32, about
2.4 passes over the 200 demonstrations; the paper trains 50k steps of batch 512). The first LIBERO
run scored 0/100 where replaying a demonstration blind scores 0.81, and its gripper accuracy on the
training batches was still rising (0.83 at the last step; Meta-World runs end at 0.95-0.99).

This script copies the finished run's checkpoints into ``artifacts/bench/libero-budget/<run>``
(the run itself is not touched), continues the same run config to each of ``--steps`` (a resumed run
equals an uninterrupted one, tests/test_train.py) and evaluates each policy on the first
``--episodes-per-task`` of the run's held-out initial states. It prints, per training length, the
losses and gripper accuracy over the last 200 steps and the closed-loop success with its Wilson
interval. Evaluations are cached next to the policies, so a re-run only trains and evaluates what
is missing. Needs the run's DVC stage to have finished (``vlm4vla repro`` of the default profile).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import yaml

from vlm4vla.analysis.runs import fit_at
from vlm4vla.pipeline.notebook import repo_root
from vlm4vla.stats import wilson_interval
from vlm4vla.train import make_run_config, resolve_paths, train_to_milestone
from vlm4vla.train.evaluation import benchmark_configs, cached_evaluate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="lb-qwen-s-long-pretrained-s0", help="a LIBERO run of params.yaml's runs")
    p.add_argument("--steps", type=int, nargs="+", default=[6000, 9000])
    p.add_argument("--episodes-per-task", type=int, default=3)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()

    root = repo_root()
    params = yaml.safe_load((root / "params.yaml").read_text())["runs"]
    if args.run not in params:
        raise SystemExit(f"--run {args.run!r}: not a run of params.yaml (e.g. {sorted(params)[:3]})")
    section = params[args.run]
    if section.get("suite", {}).get("benchmark") != "libero":
        raise SystemExit(f"--run {args.run!r}: a Meta-World run; this benchmark is about LIBERO runs")
    source = root / "artifacts" / "runs" / args.run
    if not (source / "policy").is_dir():
        raise SystemExit(f"{source}/policy is missing: run `vlm4vla repro --profile default` until {args.run} has finished")
    cfg = resolve_paths(make_run_config({**section["run"], "demos_dir": section["demos_dir"]}), root)
    base_steps = cfg.train.steps
    if any(s <= base_steps for s in args.steps):
        raise SystemExit(f"--steps {args.steps}: each must exceed the run's {base_steps} steps")
    suite_cfg, eval_cfg = benchmark_configs(section["suite"], section["evaluation"])
    eval_cfg = replace(eval_cfg, episodes_per_task=args.episodes_per_task, workers=args.workers)

    out = root / "artifacts" / "bench" / "libero-budget" / args.run
    if not out.exists():  # the finished run's checkpoints: training continues from its last step
        out.mkdir(parents=True)
        shutil.copytree(source / "checkpoints", out / "checkpoints")
        shutil.copy(source / "history.csv", out / "history.csv")
        shutil.copytree(source / "policy", out / f"policy-step{base_steps}")
    print(f"{args.run}: {cfg.train.batch_size} per batch, evaluation on {args.episodes_per_task} episodes per task "
          f"(initial states from {eval_cfg.init_states[0]}), k={eval_cfg.execute_k}", flush=True)
    print("| steps | loss (arm) | gripper BCE | gripper accuracy | success | 95% interval | train + eval min |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    own = json.loads((source / "eval_results.json").read_text())[str(eval_cfg.execute_k)]["overall"]
    _row(out, base_steps, own["successes"], own["n"], "(the run's own evaluation)")
    for steps in sorted(args.steps):
        t0 = time.perf_counter()
        policy = out / f"policy-step{steps}"
        trained = not policy.exists()
        if trained:
            policy = train_to_milestone(replace(cfg, train=replace(cfg.train, steps=steps)), out, steps, progress=False)
        result, reused = cached_evaluate(policy, suite_cfg, eval_cfg, out / "evals" / f"step{steps}.json")
        minutes = "(stored)" if reused and not trained else f"{(time.perf_counter() - t0) / 60:.1f}"
        _row(out, steps, result["overall"]["successes"], result["overall"]["n"], minutes)


def _row(out: Path, steps: int, k: int, n: int, minutes: str) -> None:
    fit = fit_at(pd.read_csv(out / "history.csv"), step=steps)
    lo, hi = wilson_interval(k, n)
    print(f"| {steps} | {fit.loss_arm:.4f} | {fit.loss_gripper:.3f} | {fit.acc_gripper:.3f} "
          f"| {k}/{n} | [{lo:.2f}, {hi:.2f}] | {minutes} |", flush=True)


if __name__ == "__main__":
    main()
