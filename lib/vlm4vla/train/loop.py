"""The one training loop: build, resume, iterate ``train_step``, log, checkpoint, save the policy.

Logging: DVCLive (``<out_dir>/live``; no git / DVC-experiment side effects) and a plain
``history.csv``; a summary in ``train_summary.json``. Divergence stops the run with the step and
the loss value (``TrainingDiverged``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from tqdm.auto import tqdm

from vlm4vla.adapter.actions import ActionConventions, fit_conventions
from vlm4vla.adapter.policy import VLAPolicy, save_policy
from vlm4vla.data.chunks import ChunkDataset, DemoStoreLike, StepSampler, collate
from vlm4vla.train.checkpoint import restore_latest, save_checkpoint
from vlm4vla.train.config import RunConfig, TrainConfig
from vlm4vla.train.step import TrainState, init_state, train_step

HISTORY = "history.csv"
SUMMARY = "train_summary.json"
POLICY_DIR = "policy"
FIELDS = ("step", "loss", "loss_arm", "loss_gripper", "acc_gripper", "grad_norm", "lr", "seconds")


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """Accelerate handles devices / DDP; bf16 autocast on CUDA only (CPU stays float32, simple)."""
    precision = cfg.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() else "no"
    # Some families hold parameters the action forward never uses (LLaVA's last vision layer, a
    # SigLIP pooling head): DDP must be told, or it waits for their gradients forever.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available(), kwargs_handlers=[ddp])


@contextlib.contextmanager
def determinism(cfg: RunConfig) -> Iterator[None]:
    """Seeded, deterministic kernels where torch has them (restored afterwards)."""
    previous = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    torch.manual_seed(cfg.seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (CUDA docs)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.set_num_threads(threads)


def open_store(demos_dir: str) -> DemoStoreLike:
    """The demonstration store of ``demos_dir`` (the benchmark engineer's reader)."""
    from vlm4vla.data.demos import DemoStore

    return DemoStore.open(demos_dir)


def make_loader(store: DemoStoreLike, conventions: ActionConventions, cfg: RunConfig,
                start_step: int, accelerator: Accelerator) -> torch.utils.data.DataLoader:
    """Batches for steps ``start_step .. steps-1`` of this process (see ``StepSampler``)."""
    dataset = ChunkDataset(store, conventions, cfg.head.chunk_size, cfg.data, cfg.seed)
    sampler = StepSampler(len(dataset), cfg.train.batch_size, cfg.train.steps, cfg.seed, start_step,
                          accelerator.process_index, accelerator.num_processes)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                       num_workers=cfg.data.num_workers)


class History:
    """Per-step metrics to DVCLive and ``history.csv`` (rows after a resumed step are dropped)."""

    def __init__(self, out_dir: Path, start_step: int, enabled: bool) -> None:
        self.enabled, self.path = enabled, out_dir / HISTORY
        self.live = None
        if not enabled:
            return
        self._truncate(start_step)
        from dvclive import Live

        self.live = Live(dir=str(out_dir / "live"), resume=start_step > 0, save_dvc_exp=False, dvcyaml=False)
        self.live.step = start_step
        fresh = not self.path.exists()
        self.file = self.path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, FIELDS, extrasaction="ignore")
        if fresh:
            self.writer.writeheader()

    def _truncate(self, start_step: int) -> None:
        """Drop rows logged after the checkpoint we resume from (history.csv and DVCLive's .tsv)."""
        if start_step == 0:
            self.path.unlink(missing_ok=True)
            return
        live_rows = (self.path.parent / "live" / "plots" / "metrics").rglob("*.tsv")
        for path, delimiter in [(self.path, ","), *((p, "\t") for p in live_rows)]:
            if path.exists():
                _keep_rows(path, delimiter, lambda step: step < start_step if delimiter == "\t" else step <= start_step)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """Log one step's metrics."""
        if not self.enabled:
            return
        self.writer.writerow({"step": step, **metrics})
        self.file.flush()
        for key, value in metrics.items():
            self.live.log_metric(f"train/{key}", value)
        self.live.next_step()

    def close(self) -> None:
        """Flush and close both sinks."""
        if self.enabled:
            self.file.close()
            self.live.end()


def _keep_rows(path: Path, delimiter: str, keep: Any) -> None:
    """Rewrite a CSV / TSV keeping the rows whose integer ``step`` passes ``keep``."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        header, rows = reader.fieldnames or [], [r for r in reader if keep(int(r["step"]))]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, header, delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)


def _loop(state: TrainState, loader: Any, out: Path, history: History, progress: bool) -> TrainState:
    cfg, t0 = state.cfg.train, time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=state.step, disable=not progress, desc="train", mininterval=5.0)
    for batch in loader:
        state, metrics = train_step(state, batch)
        history.write(state.step, {**metrics, "seconds": time.perf_counter() - t0})
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
            state.accelerator.wait_for_everyone()
            if state.accelerator.is_main_process:
                save_checkpoint(state, out, cfg.keep_checkpoints)
    bar.close()
    return state


def train(cfg: RunConfig, out_dir: str | Path, store: DemoStoreLike | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train a VLA policy; resumes from the last checkpoint in ``out_dir``. Returns a summary dict.

    ``store`` overrides ``cfg.data.demos_dir`` (tests pass an in-memory store).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with determinism(cfg):
        accelerator = make_accelerator(cfg.train)
        store = open_store(cfg.data.demos_dir) if store is None else store
        conventions = fit_conventions(store.actions, cfg.data.clip)
        state, table = init_state(cfg, accelerator)
        state = restore_latest(state, out)
        start, t0 = state.step, time.perf_counter()
        history = History(out, start, accelerator.is_main_process)
        try:
            state = _loop(state, make_loader(store, conventions, cfg, start, accelerator), out, history, progress)
        finally:
            history.close()
        seconds = time.perf_counter() - t0
    return _finish(state, conventions, table, out, start, seconds)


def train_to_milestone(cfg: RunConfig, out_dir: str | Path, step: int, **kwargs: Any) -> Path:
    """The policy after ``step`` training steps of ``cfg``, kept as ``policy-step<step>/``.

    Trains to ``step`` (resuming as ``train`` does) unless that snapshot exists, so a killed and
    re-run notebook evaluates the same early policy; a later ``train(cfg, out_dir)`` resumes from it
    to the same final policy as an uninterrupted run.
    """
    out = Path(out_dir)
    snapshot = out / f"{POLICY_DIR}-step{step}"
    if not snapshot.exists():
        part = train(replace(cfg, train=replace(cfg.train, steps=step)), out, **kwargs)
        tmp = out / f".{snapshot.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(part["policy_dir"], tmp)
        os.replace(tmp, snapshot)
    return snapshot


def _finish(state: TrainState, conventions: ActionConventions, table: Any, out: Path,
            start: int, seconds: float) -> dict[str, Any]:
    """Save the policy, freezing table and summary (main process); return the summary."""
    cfg, done = state.cfg, state.step - start
    summary = {"steps": state.step, "steps_this_session": done, "resumed_from": start,
               "seconds": seconds, "samples_per_s": done * cfg.train.batch_size / max(seconds, 1e-9),
               **state.adapter.new_parameters(), "policy_dir": str(out / POLICY_DIR),
               "history": str(out / HISTORY), "run": cfg.to_dict(), "conventions": conventions.to_dict()}
    if state.accelerator.is_main_process:
        save_policy(VLAPolicy(state.adapter, conventions), out / POLICY_DIR, extra={"run": cfg.to_dict()})
        state.adapter.train()
        table.to_csv(out / "freezing.csv")
        (out / SUMMARY).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    summary["freezing"] = table
    return summary
