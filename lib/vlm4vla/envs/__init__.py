"""Simulated language-conditioned task suites (Meta-World), scripted experts and the episode loop.

See the package docstring of vlm4vla for what this part may import. Knows no model.
"""

import os

# Headless rendering; must be set before anything imports mujoco (metaworld does at import).
os.environ.setdefault("MUJOCO_GL", "egl")

from vlm4vla.envs.experts import ExpertPolicy  # noqa: E402
from vlm4vla.envs.ground_truth import SEGMENTATION_CLASSES  # noqa: E402
from vlm4vla.envs.instructions import instructions_for, pick_instruction  # noqa: E402
from vlm4vla.envs.rollout import ACTION_DIM, Callback, Job, Policy, make_jobs, run_episodes  # noqa: E402
from vlm4vla.envs.suite import (  # noqa: E402
    ALL_TASKS,
    MAX_EPISODE_STEPS,
    PRESETS,
    SuiteConfig,
    check_task,
    make_suite_config,
)  # noqa: E402

__all__ = [
    "ACTION_DIM", "ALL_TASKS", "MAX_EPISODE_STEPS", "PRESETS", "SEGMENTATION_CLASSES",
    "Callback", "ExpertPolicy", "Job", "Policy", "SuiteConfig", "check_task", "instructions_for",
    "make_jobs", "make_suite_config", "pick_instruction", "run_episodes",
]
