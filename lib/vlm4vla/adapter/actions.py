"""Action data conventions, stated once and used by training and evaluation alike.

The ordered steps (``STEPS``) turn the benchmark's per-frame actions (F, A) into training targets,
and their inverse turns the head's outputs back into the benchmark's action space:

1. ``normalise``: arm dims mapped affinely so the training set's q01 -> -1 and q99 -> +1
   (q01/q99 normalisation as for Open-X data in the paper; stats computed on the training set
   and saved with the policy).
2. ``chunk``: the N actions from frame t on; at an episode end the last action is repeated.
3. ``clip_rescale``: arm dims clipped to [-ACTION_CLIP, ACTION_CLIP] and divided by ACTION_CLIP,
   so targets lie in [-1, 1], the range of the head's tanh (STUDY.md, "The adapter").
4. ``gripper_binary``: the last dim becomes 1.0 (closed) if > 0 else 0.0; decoded back to the
   env's +1 / -1 (Meta-World: +1 closes the gripper).

Steps 1, 3 and 4 act element-wise, so they commute with chunking; ``encode`` applies them to whole
episodes and ``chunk_window`` then cuts windows. Inverse at evaluation: 4, 3, 1 (chunk: identity,
the harness executes the first k actions).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vlm4vla.constants import ACTION_CLIP

STEPS: tuple[str, ...] = ("normalise", "chunk", "clip_rescale", "gripper_binary")
QUANTILES = (0.01, 0.99)  # q01 / q99 as in the paper's Open-X normalisation
_MIN_RANGE = 1e-6  # a dim with q99 - q01 below this is left unscaled (constant dims)


@dataclass(frozen=True)
class ActionConventions:
    """The data conventions of one policy: normalisation stats, clip and gripper dim.

    ``q01`` / ``q99`` hold one value per arm dim (all dims but the last, which is the gripper).
    """

    q01: tuple[float, ...]
    q99: tuple[float, ...]
    clip: float = ACTION_CLIP
    steps: tuple[str, ...] = field(default=STEPS)

    def __post_init__(self) -> None:
        if len(self.q01) != len(self.q99) or not self.q01:
            raise ValueError(f"q01 / q99 must be non-empty and of equal length, got {self.q01} / {self.q99}")
        if not 0 < self.clip <= 1:
            raise ValueError(f"clip={self.clip!r} must lie in (0, 1]")
        if tuple(self.steps) != STEPS:
            raise ValueError(f"steps={self.steps!r}; only the ordered steps {STEPS} are implemented")

    @property
    def arm_dim(self) -> int:
        """Number of continuous arm dims (the action dim minus the gripper)."""
        return len(self.q01)

    def _scale(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.asarray(self.q01, np.float32), np.asarray(self.q99, np.float32)
        half = np.where(hi - lo > _MIN_RANGE, (hi - lo) / 2, 1.0).astype(np.float32)
        return ((hi + lo) / 2).astype(np.float32), half

    def encode(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Env actions (..., A) -> (arm targets (..., A-1) in [-1, 1], gripper targets (...) in {0, 1})."""
        actions = np.asarray(actions, np.float32)
        self._check_dim(actions)
        centre, half = self._scale()
        arm = (actions[..., :-1] - centre) / half  # normalise
        arm = np.clip(arm, -self.clip, self.clip) / self.clip  # clip_rescale
        gripper = (actions[..., -1] > 0).astype(np.float32)  # gripper_binary
        return arm.astype(np.float32), gripper

    def decode(self, arm: np.ndarray, gripper_logits: np.ndarray) -> np.ndarray:
        """Head outputs (..., A-1) in [-1, 1] and (...) logits -> env actions (..., A)."""
        arm = np.asarray(arm, np.float32)
        if arm.shape[-1] != self.arm_dim:
            raise ValueError(f"arm has {arm.shape[-1]} dims, conventions expect {self.arm_dim}")
        centre, half = self._scale()
        arm = np.clip(arm, -1.0, 1.0) * self.clip * half + centre  # inverse clip_rescale, normalise
        gripper = np.where(np.asarray(gripper_logits) > 0, 1.0, -1.0).astype(np.float32)
        return np.concatenate([arm, gripper[..., None]], axis=-1).astype(np.float32)

    def _check_dim(self, actions: np.ndarray) -> None:
        if actions.shape[-1] != self.arm_dim + 1:
            raise ValueError(f"actions have {actions.shape[-1]} dims, conventions expect {self.arm_dim + 1}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (saved next to the policy weights)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ActionConventions":
        """Inverse of ``to_dict``."""
        return cls(q01=tuple(data["q01"]), q99=tuple(data["q99"]), clip=float(data["clip"]),
                   steps=tuple(data.get("steps", STEPS)))

    def to_json(self) -> str:
        """The conventions as a JSON string."""
        return json.dumps(self.to_dict(), indent=2)


def fit_conventions(actions: np.ndarray, clip: float = ACTION_CLIP) -> ActionConventions:
    """Conventions whose q01 / q99 come from ``actions`` (F, A): the training set's frames only."""
    actions = np.asarray(actions, np.float64)
    if actions.ndim != 2 or actions.shape[1] < 2 or len(actions) == 0:
        raise ValueError(f"actions must be (F, A) with A >= 2 and F >= 1, got {actions.shape}")
    q01, q99 = np.quantile(actions[:, :-1], QUANTILES, axis=0)
    return ActionConventions(q01=tuple(map(float, q01)), q99=tuple(map(float, q99)), clip=clip)


def chunk_window(values: np.ndarray, start: int, stop: int, t: int, size: int) -> np.ndarray:
    """Rows t .. t+size-1 of ``values`` within episode rows [start, stop); the last row repeats.

    ``values`` is indexed by frame over the whole store; (start, stop) bound frame t's episode.
    """
    if not start <= t < stop:
        raise IndexError(f"frame {t} outside its episode [{start}, {stop})")
    idx = np.minimum(np.arange(t, t + size), stop - 1)
    return values[idx]


def clipped_fraction(actions: np.ndarray, conventions: ActionConventions) -> float:
    """Share of arm values that ``clip_rescale`` clips (reported: how much the 0.65 clip removes)."""
    centre, half = conventions._scale()
    arm = (np.asarray(actions, np.float32)[..., :-1] - centre) / half
    return float(np.mean(np.abs(arm) > conventions.clip))
