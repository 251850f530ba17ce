"""The action loss: Huber on the arm + 0.01 x BCE-with-logits on the gripper.

The released code (RoboVLMs ``BasePolicyHead.loss``) uses ``huber_loss`` (delta 1, mean); the paper
text says MSE. ``HeadConfig.arm_loss`` selects either; Huber is the default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlm4vla.adapter.head import HeadConfig


def action_loss(
    arm: torch.Tensor, gripper_logits: torch.Tensor,
    arm_target: torch.Tensor, gripper_target: torch.Tensor, cfg: HeadConfig,
) -> dict[str, torch.Tensor]:
    """Loss terms for predictions (B, N, arm_dim), (B, N) against targets of the same shapes.

    Returns ``loss`` (the total to minimise), ``loss_arm``, ``loss_gripper`` and ``acc_gripper``.
    Computed in float32 whatever the autocast dtype of the predictions.
    """
    arm, gripper_logits = arm.float(), gripper_logits.float()
    arm_target, gripper_target = arm_target.float(), gripper_target.float()
    if cfg.arm_loss == "huber":
        loss_arm = F.huber_loss(arm, arm_target, delta=1.0)
    else:
        loss_arm = F.mse_loss(arm, arm_target)
    loss_gripper = F.binary_cross_entropy_with_logits(gripper_logits, gripper_target)
    acc = ((gripper_logits > 0).float() == gripper_target).float().mean()
    total = loss_arm + cfg.gripper_weight * loss_gripper
    return {"loss": total, "loss_arm": loss_arm, "loss_gripper": loss_gripper, "acc_gripper": acc.detach()}
