"""Initialisation and the pure training step.

``train_step(state, batch) -> (state, metrics)`` does one optimisation step and nothing else (no
I/O, no logging); the learning rate is a pure function of the step (``lr_at``), so resuming needs
no scheduler state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

import torch
from accelerate import Accelerator

from vlm4vla.adapter.freezing import apply_freezing
from vlm4vla.adapter.losses import action_loss
from vlm4vla.adapter.query import ActionQueryAdapter, make_adapter
from vlm4vla.backbones.base import Backbone, BackboneConfig, load_backbone, make_backbone
from vlm4vla.constants import INSTRUCTION, OBS_IMAGE
from vlm4vla.data.chunks import ARM_TARGET, GRIPPER_TARGET
from vlm4vla.envs.instructions import PARAPHRASES
from vlm4vla.train.config import SCRATCH_SIZES, BackboneSpec, RunConfig, TrainConfig


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became non-finite or exceeded ``TrainConfig.max_loss``."""


@dataclass(frozen=True)
class TrainState:
    """Everything a step reads and updates. Model and optimizer are updated in place by torch."""

    step: int
    model: torch.nn.Module  # the adapter, possibly wrapped by Accelerate (DDP)
    optimizer: torch.optim.Optimizer
    accelerator: Accelerator
    cfg: RunConfig

    @property
    def adapter(self) -> ActionQueryAdapter:
        """The unwrapped adapter."""
        return self.accelerator.unwrap_model(self.model)


def build_backbone(spec: BackboneSpec, seed: int) -> Backbone:
    """A saved backbone folder (re-initialised if ``spec.init == "scratch"``), or a random-init
    architecture whose tokenizer knows the instructions."""
    if not spec.is_scratch:
        backbone = load_backbone(spec.source)
        return reinitialise(backbone, seed) if spec.init == "scratch" else backbone
    family, size = spec.family_and_size
    texts = sorted({p for phrases in PARAPHRASES.values() for p in phrases})
    return make_backbone(BackboneConfig(family=family, seed=seed, **SCRATCH_SIZES[size]), texts=texts)


def reinitialise(backbone: Backbone, seed: int) -> Backbone:
    """The same architecture and tokenizer with freshly initialised (seeded) weights."""
    torch.manual_seed(seed)
    model = type(backbone.model)(backbone.model.config).eval()
    card = {**backbone.card, "init": "random (architecture of a saved backbone)"}
    return Backbone(backbone.spec, model, backbone.tokenizer, backbone.image_size, card)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up from 0 over ``warmup_steps``, then constant (paper)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    return cfg.lr


def make_optimizer(adapter: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, weight decay 0 (paper)."""
    params = [p for p in adapter.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr_at(0, cfg), betas=cfg.betas, weight_decay=cfg.weight_decay)


def init_state(cfg: RunConfig, accelerator: Accelerator) -> tuple[TrainState, Any]:
    """Build backbone, adapter (seeded), freezing and optimizer; returns the state and freezing table."""
    adapter = make_adapter(build_backbone(cfg.backbone, cfg.seed), cfg.head, seed=cfg.seed)
    table = apply_freezing(adapter, cfg.freeze)
    adapter.train()
    optimizer = make_optimizer(adapter, cfg.train)
    model, optimizer = accelerator.prepare(adapter, optimizer)
    return TrainState(0, model, optimizer, accelerator, cfg), table


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_step(state: TrainState, batch: Mapping[str, Any]) -> tuple[TrainState, dict[str, float]]:
    """One AdamW step on ``batch`` (images, instructions, target chunks); returns the next state."""
    cfg, acc = state.cfg, state.accelerator
    _set_lr(state.optimizer, lr_at(state.step, cfg.train))
    inputs = state.adapter.encode(batch[OBS_IMAGE], batch[INSTRUCTION])
    with acc.autocast():
        arm, gripper = state.model(inputs)  # (B, N, arm_dim), (B, N)
    device = arm.device
    terms = action_loss(arm, gripper, batch[ARM_TARGET].to(device), batch[GRIPPER_TARGET].to(device), cfg.head)
    check_finite("loss", terms["loss"], state.step, cfg.train.max_loss)
    acc.backward(terms["loss"])
    params = [p for p in state.model.parameters() if p.requires_grad]
    grad_norm = acc.clip_grad_norm_(params, cfg.train.grad_clip)
    check_finite("grad_norm", grad_norm, state.step, math.inf)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    metrics = {k: float(v.detach()) for k, v in terms.items()}
    metrics.update(grad_norm=float(grad_norm), lr=lr_at(state.step, cfg.train))
    return replace(state, step=state.step + 1), metrics


def check_finite(name: str, value: torch.Tensor, step: int, limit: float) -> None:
    """Raise ``TrainingDiverged`` naming the step and value if ``value`` is not finite or above ``limit``."""
    v = float(value.detach()) if torch.is_tensor(value) else float(value)
    if not math.isfinite(v) or v > limit:
        raise TrainingDiverged(f"training diverged at step {step}: {name} = {v!r} "
                               f"(limit {limit}); lower TrainConfig.lr or check the data")
