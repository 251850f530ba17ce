"""Capability probes: what a VLM can do, measured apart from any robot policy.

- ``general``: general VQA on the held-out corpus (the study's "general capability" axis).
- ``embodied``: zero-shot pointing, depth order, spatial relation and gripper-state questions about
  robot frames, scored against simulator ground truth (the "embodied skill" axis).
- ``linear``: ridge probes of the frozen vision features for end-effector / object position and
  gripper state, R^2 on held-out episodes, with pixel and random-init reference points.
- ``summary``: all robot probes of one backbone as one flat ``probe_*`` dict (zoo summary columns).

Only the general probe is re-exported here: the model builders (zoo, auxiliary and control
fine-tunes) score general VQA while they train, and importing the package then loads nothing else,
so their pipeline stages depend on ``general`` alone. Import the others from their modules.
"""

from vlm4vla.probes.general import accuracy_summary, general_vqa_accuracy, normalise_answer, vqa_answers

__all__ = ["accuracy_summary", "general_vqa_accuracy", "normalise_answer", "vqa_answers"]
