"""Simulated language-conditioned task suites (Meta-World, LIBERO), scripted experts and the episode loop.

See the package docstring of vlm4vla for what this part may import. Knows no model.

The names below are loaded on first use (PEP 562), so importing one submodule imports only what it
needs: ``vlm4vla.envs.libero`` imports in ``.venv-libero``, which has no Meta-World, and the
Meta-World names import in the main environment, which has no robosuite.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# Headless rendering; must be set before anything imports mujoco (metaworld does at import).
os.environ.setdefault("MUJOCO_GL", "egl")

_EXPORTS = {
    "ExpertPolicy": "experts",
    "SEGMENTATION_CLASSES": "ground_truth",
    "instructions_for": "instructions", "pick_instruction": "instructions",
    "ACTION_DIM": "rollout", "Callback": "rollout", "Job": "rollout", "Policy": "rollout", "make_jobs": "rollout",
    "run_episodes": "rollout",
    "ALL_TASKS": "suite", "MAX_EPISODE_STEPS": "suite", "PRESETS": "suite", "SuiteConfig": "suite",
    "check_task": "suite", "make_suite_config": "suite",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # the same names for type checkers and IDEs
    from vlm4vla.envs.experts import ExpertPolicy
    from vlm4vla.envs.ground_truth import SEGMENTATION_CLASSES
    from vlm4vla.envs.instructions import instructions_for, pick_instruction
    from vlm4vla.envs.rollout import ACTION_DIM, Callback, Job, Policy, make_jobs, run_episodes
    from vlm4vla.envs.suite import ALL_TASKS, MAX_EPISODE_STEPS, PRESETS, SuiteConfig, check_task, make_suite_config


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value
