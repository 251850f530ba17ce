"""Capability probes: what a VLM can do, measured apart from any robot policy.

- ``general``: general VQA on the held-out corpus (the study's "general capability" axis).
- ``embodied``: zero-shot pointing, depth order, spatial relation and gripper-state questions about
  robot frames, scored against simulator ground truth (the "embodied skill" axis).
- ``linear``: ridge probes of the frozen vision features for end-effector / object position and
  gripper state, R^2 on held-out episodes, with pixel and random-init reference points.
- ``summary``: all robot probes of one backbone as one flat ``probe_*`` dict (zoo summary columns).
"""

from vlm4vla.probes.embodied import (EMBODIED_PROBES, EmbodiedProbeConfig, depth_order_accuracy, embodied_probes,
                                     gripper_state_accuracy, pointing_error, relation_accuracy)
from vlm4vla.probes.general import accuracy_summary, general_vqa_accuracy, normalise_answer, vqa_answers
from vlm4vla.probes.linear import (LinearProbeConfig, image_token_embeddings, linear_probes, pixel_features,
                                   random_init_twin, vision_features)
from vlm4vla.probes.summary import ProbeConfig, flatten_probes, robot_probe_summary

__all__ = [
    "EMBODIED_PROBES", "EmbodiedProbeConfig", "LinearProbeConfig", "ProbeConfig", "accuracy_summary",
    "depth_order_accuracy", "embodied_probes", "flatten_probes", "general_vqa_accuracy", "gripper_state_accuracy",
    "image_token_embeddings", "linear_probes", "normalise_answer", "pixel_features", "pointing_error",
    "random_init_twin", "relation_accuracy", "robot_probe_summary", "vision_features", "vqa_answers",
]
