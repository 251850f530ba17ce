"""Meta-World's scripted expert policies behind the harness's Policy protocol (privileged state)."""

from __future__ import annotations

from typing import Any

import numpy as np
from metaworld.policies import ENV_POLICY_MAP

from vlm4vla.constants import OBS_STATE, TASK


class ExpertPolicy:
    """Scripted Meta-World expert per task; reads OBS_STATE (the 39-D state with the goal), never pixels."""

    chunk_size = 1  # the experts are closed-loop controllers: one action per state

    def __init__(self) -> None:
        self._experts: dict[str, Any] = {}

    def reset(self) -> None:
        """The experts are stateless."""

    def act(self, batch: dict[str, Any]) -> np.ndarray:
        """(B, 1, 4) float32: one expert action per environment."""
        states = np.asarray(batch[OBS_STATE], dtype=np.float64)  # (B, 39)
        actions = [self._expert(task).get_action(state) for task, state in zip(batch[TASK], states)]
        return np.clip(np.stack(actions), -1.0, 1.0).astype(np.float32)[:, None, :]  # (B, 1, 4)

    def _expert(self, task: str) -> Any:
        if task not in self._experts:
            self._experts[task] = ENV_POLICY_MAP[task]()
        return self._experts[task]
