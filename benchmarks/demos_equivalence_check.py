"""Do rebuilt demonstrations that differ in bytes from the ones finished runs were trained on train the same?

Finished policy runs depend (in DVC) on ``artifacts/demonstrations``. A fresh machine restores the
demonstrations before it trains a new run; if the rebuild differs in bytes from the folder recorded for
the finished runs (it has, between machines: README "Results in git"), DVC sees those runs as changed and
the next plan trains them again. This check re-trains runs on the demonstrations here, one torch thread
as a stage does, for ``--steps`` steps, and compares the training history (loss, its parts, gripper
accuracy, gradient norm and learning rate of every step) bit for bit with the history kept in git
(``artifacts/run-results/<run>/history.csv``). The first ``warmup_steps`` steps do not depend on the
number of steps (linear warm-up), so a short check compares exactly; at the run's full step count the
whole training is compared, i.e. the trained policy is the same one.

With ``--write`` and every checked run bit-identical, the stages recorded in ``dvc.lock`` with the old
demonstrations (``--old`` md5, default: every stage whose hash differs from the demonstrations stage's
own output) are re-pointed at the demonstrations here, so they stay finished.

    .venv/bin/python benchmarks/demos_equivalence_check.py RUN[:STEPS] ... [--write]
"""

from __future__ import annotations

import argparse
import re
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
import yaml

from vlm4vla.train import make_run_config, resolve_paths, train

ROOT = Path(__file__).resolve().parents[1]
DEMOS = "artifacts/demonstrations"
COMPARED = ["loss", "loss_arm", "loss_gripper", "acc_gripper", "grad_norm", "lr"]


def check(run: str, steps: int | None) -> bool:
    """Re-train ``run`` for ``steps`` (None: all) on the demonstrations here; True if its history is bit-identical."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["runs"].get(run)
    if params is None:
        raise SystemExit(f"run {run!r}: not in params.yaml's runs (write the profile's params first)")
    kept = ROOT / "artifacts/run-results" / run / "history.csv"
    if not kept.is_file():
        raise SystemExit(f"run {run!r}: no {kept.relative_to(ROOT)} in git to compare with")
    cfg = resolve_paths(make_run_config({**params["run"], "demos_dir": params["demos_dir"]}), ROOT)
    steps = steps or cfg.train.steps
    if steps > cfg.train.steps:
        raise SystemExit(f"{run}:{steps}: at most the run's {cfg.train.steps} steps")
    if steps != cfg.train.steps and steps > cfg.train.warmup_steps:
        raise SystemExit(f"{run}:{steps}: a partial check compares only the warm-up (<= {cfg.train.warmup_steps} "
                         f"steps, whose learning rate does not depend on the step count) or the whole run")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        train(replace(cfg, train=replace(cfg.train, steps=steps)), tmp, progress=False)
        new = pd.read_csv(Path(tmp) / "history.csv")[COMPARED]
    old = pd.read_csv(kept)[COMPARED].head(len(new))
    same = {c: bool((new[c].to_numpy() == old[c].to_numpy()).all()) for c in COMPARED}
    diff = {c: float((new[c] - old[c]).abs().max()) for c in COMPARED if not same[c]}
    print(f"{run}: {len(new)} of {cfg.train.steps} steps, "
          + ("bit-identical history" if all(same.values()) else f"DIFFERENT (max abs diff {diff})"), flush=True)
    return all(same.values())


def demonstrations_hashes(lock_text: str) -> tuple[dict, dict[str, str]]:
    """(the demonstrations stage's own output entry, {stage: md5 of the demonstrations it read})."""
    stages = yaml.safe_load(lock_text)["stages"]
    own = next((o for o in stages.get("demonstrations", {}).get("outs", []) if o["path"] == DEMOS), None)
    if own is None:
        raise SystemExit("dvc.lock: the demonstrations stage records no output (run it first)")
    return own, {name: d["md5"] for name, stage in stages.items() for d in stage.get("deps", []) if d["path"] == DEMOS}


def repoint(lock: Path, old: str, new: str, new_size: int) -> list[str]:
    """Every dependency on the demonstrations recorded as ``old`` becomes ``new``; returns the stages."""
    text = lock.read_text()
    _, read = demonstrations_hashes(text)
    stages = sorted(s for s, md5 in read.items() if md5 == old)
    pattern = re.compile(rf"(- path: {re.escape(DEMOS)}\n(\s+)hash: md5\n\s+)md5: {re.escape(old)}\n(\s+)size: \d+")
    text, n = pattern.subn(lambda m: f"{m.group(1)}md5: {new}\n{m.group(3)}size: {new_size}", text)
    if n != len(stages):
        raise SystemExit(f"dvc.lock: found {len(stages)} stages reading {old} but rewrote {n} entries; nothing written")
    tmp = lock.with_suffix(".lock.tmp")
    tmp.write_text(text)
    tmp.replace(lock)
    return stages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", metavar="RUN[:STEPS]")
    ap.add_argument("--old", help="md5 of the demonstrations the runs were trained on (default: each differing one)")
    ap.add_argument("--write", action="store_true", help="re-point dvc.lock when every check is bit-identical")
    args = ap.parse_args()
    lock = ROOT / "dvc.lock"
    own, read = demonstrations_hashes(lock.read_text())
    results = [check(run, int(steps) if steps else None) for run, _, steps in (r.partition(":") for r in args.runs)]
    stale = sorted({args.old} if args.old else {md5 for md5 in read.values() if md5 != own["md5"]})
    print(f"demonstrations here: {own['md5']}; recorded for finished stages instead: "
          + (", ".join(f"{md5} ({sum(v == md5 for v in read.values())} stages)" for md5 in stale) or "none"))
    if args.write and all(results) and stale:
        for md5 in stale:
            print(f"re-pointed at {own['md5']}: {repoint(lock, md5, own['md5'], own['size'])}")
    elif args.write:
        print("nothing written: " + ("a history differs" if not all(results) else "no stage reads other demonstrations"))


if __name__ == "__main__":
    main()
