"""Training checkpoints: safetensors for tensors, JSON for the rest, written atomically.

``<out_dir>/checkpoints/step_<N>/``: ``model.safetensors`` (the whole adapter; tied weights once),
``optimizer.safetensors`` (AdamW moments and step counts), ``state.json`` (step, RNG states as
lists, optimizer hyper-parameters, the run config). The data order is a pure function of the step
(``StepSampler``), so the step is the data position. Nothing is unpickled when loading.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from vlm4vla.train.step import TrainState

CHECKPOINTS = "checkpoints"
_PREFIX = "step_"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    sd = optimizer.state_dict()
    tensors = {f"{i}.{k}": torch.as_tensor(v).detach().cpu().contiguous()
               for i, s in sd["state"].items() for k, v in s.items()}
    return tensors, sd["param_groups"]


def _rng_state() -> dict[str, list[list[int]]]:
    state = {"cpu": [torch.random.get_rng_state().tolist()]}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def save_checkpoint(state: TrainState, out_dir: Path, keep: int) -> Path:
    """Write the checkpoint of ``state.step`` (temporary folder renamed into place); prune old ones."""
    root = Path(out_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=root))
    save_model(state.adapter, str(tmp / "model.safetensors"))
    tensors, groups = _optimizer_tensors(state.optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    meta = {"step": state.step, "rng": _rng_state(), "param_groups": groups, "run": state.cfg.to_dict()}
    (tmp / "state.json").write_text(json.dumps(meta) + "\n")
    final = root / f"{_PREFIX}{state.step:08d}"
    if final.exists():
        shutil.rmtree(final)
    tmp.replace(final)
    for old in list_checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints in ``out_dir``, oldest first (temporary folders are ignored)."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(_PREFIX) and (p / "state.json").is_file())


def _load_optimizer(optimizer: torch.optim.Optimizer, path: Path, groups: list[dict[str, Any]]) -> None:
    flat = load_file(str(path))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in groups]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _set_rng(rng: dict[str, list[list[int]]]) -> None:
    torch.random.set_rng_state(torch.tensor(rng["cpu"][0], dtype=torch.uint8))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in rng["cuda"]])


def _comparable(run: dict[str, Any]) -> dict[str, Any]:
    """The run config as JSON would give it back, without ``train.steps`` (a run may be extended)."""
    run = json.loads(json.dumps(run))
    run["train"].pop("steps", None)
    return run


def discard_foreign_run(out_dir: Path, run: dict[str, Any]) -> bool:
    """Empty ``out_dir`` if its checkpoints were written by another run config; True if it did.

    For outputs that outlive a changed stage (DVC ``persist``): the same config resumes, an edited
    one (other than ``train.steps``) starts afresh instead of failing in ``restore_latest``.
    """
    checkpoints = list_checkpoints(out_dir)
    if not checkpoints:
        return False
    meta = json.loads((checkpoints[-1] / "state.json").read_text())
    if _comparable(meta["run"]) == _comparable(run):
        return False
    for child in out_dir.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    return True


def restore_latest(state: TrainState, out_dir: Path) -> TrainState:
    """``state`` advanced to the last checkpoint in ``out_dir`` (model, optimizer, RNG); as is if none."""
    checkpoints = list_checkpoints(out_dir)
    if not checkpoints:
        return state
    path = checkpoints[-1]
    meta = json.loads((path / "state.json").read_text())
    if _comparable(meta["run"]) != _comparable(state.cfg.to_dict()):
        raise ValueError(f"{path} was written by a different run config (only train.steps may change "
                         f"on resume); use a fresh out_dir.\ncheckpoint: {meta['run']}\nnow: {state.cfg.to_dict()}")
    missing, unexpected = load_model(state.adapter, str(path / "model.safetensors"), strict=True)
    _load_optimizer(state.optimizer, path / "optimizer.safetensors", meta["param_groups"])
    _set_rng(meta["rng"])
    return type(state)(meta["step"], state.model, state.optimizer, state.accelerator, state.cfg)
