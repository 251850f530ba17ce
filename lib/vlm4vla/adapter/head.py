"""The action head: the reference code's ``FCDecoder`` (RoboVLMs ``policy_head/base_policy.py``).

Projection ``d -> d/2 -> width`` (ReLU between, none after, as in the reference), then two MLP
branches ``width -> 1024 -> 512 -> 256`` (ReLU): the arm branch ends in ``N * arm_dim`` tanh
outputs, the gripper branch in ``N`` logits. Xavier-uniform weights, zero biases.

Deviation (named in reports): the paper's arm is 6-D relative end-effector pose; Meta-World
actions are 3-D end-effector deltas + gripper, so ``arm_dim = 3`` in this study's presets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

REFERENCE_WIDTH = 1024  # FCDecoder's hidden_size in the released configs
REFERENCE_BRANCH = (1024, 512, 256)  # MLPTanhHead / MLPSigmoidHead layer widths
METAWORLD_ARM_DIM = 3  # Meta-World: xyz end-effector delta (paper: 6-D pose); + 1 gripper dim


@dataclass(frozen=True)
class HeadConfig:
    """Shape of the action head and its loss.

    chunk_size: N, actions predicted per query (paper: 10 on CALVIN, 4 on Bridge / LIBERO).
    arm_dim: continuous action dims (paper 6; Meta-World 3).
    width / branch: projection output and branch widths (reference 1024 and (1024, 512, 256));
        smaller only for tiny test models.
    arm_loss: "huber" (released code) or "mse" (paper text).
    gripper_weight: weight of the gripper BCE (0.01 in the reference code).
    """

    chunk_size: int = 4
    arm_dim: int = METAWORLD_ARM_DIM
    width: int = REFERENCE_WIDTH
    branch: tuple[int, ...] = REFERENCE_BRANCH
    arm_loss: str = "huber"
    gripper_weight: float = 0.01

    def __post_init__(self) -> None:
        for name in ("chunk_size", "arm_dim", "width"):
            if getattr(self, name) < 1:
                raise ValueError(f"HeadConfig.{name}={getattr(self, name)!r} must be >= 1")
        if not self.branch or min(self.branch) < 1:
            raise ValueError(f"HeadConfig.branch={self.branch!r} must be non-empty positive widths")
        if self.arm_loss not in ("huber", "mse"):
            raise ValueError(f"HeadConfig.arm_loss={self.arm_loss!r}; allowed: 'huber', 'mse'")
        if self.gripper_weight < 0:
            raise ValueError(f"HeadConfig.gripper_weight={self.gripper_weight!r} must be >= 0")


def _mlp(widths: tuple[int, ...], out: int) -> nn.Sequential:
    """Linear+ReLU over ``widths`` then a final Linear to ``out`` (no activation)."""
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], out))


class ActionHead(nn.Module):
    """FCDecoder: hidden state at the ActionQuery (B, D) -> arm (B, N, arm_dim), gripper logits (B, N)."""

    def __init__(self, hidden_size: int, cfg: HeadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        half = max(hidden_size // 2, 1)
        self.projection = nn.Sequential(nn.Linear(hidden_size, half), nn.ReLU(), nn.Linear(half, cfg.width))
        self.arm = _mlp((cfg.width, *cfg.branch), cfg.chunk_size * cfg.arm_dim)
        self.gripper = _mlp((cfg.width, *cfg.branch), cfg.chunk_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and zero biases on every Linear (reference ``initialize_param``)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, query_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D) -> arm in [-1, 1] (B, N, arm_dim) and gripper logits (B, N)."""
        z = self.projection(query_state)  # (B, width)
        arm = torch.tanh(self.arm(z)).view(-1, self.cfg.chunk_size, self.cfg.arm_dim)
        return arm, self.gripper(z)
