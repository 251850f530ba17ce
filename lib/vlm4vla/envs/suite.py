"""Task suites: which Meta-World tasks, which camera and size, which initial states for what.

Initial states are Meta-World *task variations*: the vector of object and goal positions that a
Meta-World task samples at reset (``_last_rand_vec``). Each task has ``N_VARIATIONS`` of them, drawn
once with Meta-World's own rejection sampling from ``VARIATION_SEED`` and indexed 0..49.
Demonstrations use ``train_variations``, evaluation the disjoint ``eval_variations`` (as LIBERO fixes
its initial states, so published numbers can be re-run).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from typing import Any

from vlm4vla.envs.instructions import INSTRUCTION_SPLITS, PARAPHRASES

BENCHMARKS = ("metaworld",)
ALL_TASKS: tuple[str, ...] = tuple(PARAPHRASES)  # the 50 Meta-World v3 tasks
# 50 variations per task, as Meta-World's benchmarks draw (metaworld._N_GOALS = 50).
N_VARIATIONS = 50
VARIATION_SEED = 0  # fixes the table of variations for every run; never changed between runs
# The scripted experts' successful episodes last 77 steps on average and 165 at most over all 50
# tasks (TASKS.md); Meta-World's own 500 would make failed episodes 2.5x slower to evaluate.
MAX_EPISODE_STEPS = 200
# 'corner' sees the table, the gripper and the task object large at 64 px (the other corners show
# them 2-3x smaller; 'topview' loses height). Mounted upside down: the renderer rotates it 180 deg.
DEFAULT_CAMERA = "corner"
CAMERAS = ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")

# Official MT10 (metaworld.env_dict.MT10_V3).
MT10 = (
    "reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3",
    "drawer-close-v3", "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3",
    "window-close-v3",
)
# Ten tasks whose outcome depends on seeing where things are (measured 2026-11-24, corner camera,
# 64 px; full table for all 50 tasks in TASKS.md): blind replay of a training demo on held-out
# variations succeeded in at most 2/10 episodes, the task object covers >= 130 pixels of 64x64, the
# expert solved 5/5 within 160 steps. Mixed skills: buttons, articulated objects, pushing, tool use,
# pick-and-place. Excluded although blind-hard: push, reach, pick-place, sweep (object 4-6 pixels).
# Re-measured with 20 held-out episodes (TASKS.md): blind replay 22% mean (door-open 60%, window-open
# 40%, others 0-35%), expert 98%, null 0%.
MT10_VISION = (
    "coffee-button-v3", "coffee-push-v3", "door-open-v3", "door-unlock-v3", "hammer-v3",
    "handle-pull-v3", "lever-pull-v3", "peg-insert-side-v3", "shelf-place-v3", "window-open-v3",
)
SMOKE = ("button-press-topdown-v3", "drawer-close-v3")
PRESETS: dict[str, tuple[str, ...]] = {"mt10": MT10, "mt10-vision": MT10_VISION, "smoke": SMOKE}


@dataclass(frozen=True)
class SuiteConfig:
    """A language-conditioned task suite: tasks, camera, image size and the variation split."""

    tasks: tuple[str, ...] = SMOKE
    benchmark: str = "metaworld"
    image_size: int = 64  # square RGB frames, pixels
    camera: str = DEFAULT_CAMERA
    max_episode_steps: int = MAX_EPISODE_STEPS
    train_variations: tuple[int, int] = (0, 30)  # [start, stop): demonstrations
    eval_variations: tuple[int, int] = (30, 50)  # [start, stop): held-out initial states
    instruction_split: str = "train"  # paraphrases used for demos: see instructions.py
    preset: str = field(default="", compare=False)  # name it was made from, for reports only

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "train_variations", tuple(self.train_variations))
        object.__setattr__(self, "eval_variations", tuple(self.eval_variations))
        _check_choice("benchmark", self.benchmark, BENCHMARKS)
        _check_choice("camera", self.camera, CAMERAS)
        _check_choice("instruction_split", self.instruction_split, INSTRUCTION_SPLITS)
        if not self.tasks:
            raise ValueError("SuiteConfig.tasks is empty: give at least one of " + ", ".join(ALL_TASKS))
        for task in self.tasks:
            check_task(task)
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"SuiteConfig.tasks has duplicates: {self.tasks}")
        if not 16 <= self.image_size <= 480:
            raise ValueError(f"SuiteConfig.image_size={self.image_size}: allowed 16..480 pixels")
        if not 1 <= self.max_episode_steps <= 500:
            raise ValueError(f"SuiteConfig.max_episode_steps={self.max_episode_steps}: allowed 1..500 (Meta-World's limit)")
        self._check_ranges()

    def _check_ranges(self) -> None:
        for name in ("train_variations", "eval_variations"):
            lo, hi = getattr(self, name)
            if not 0 <= lo < hi <= N_VARIATIONS:
                raise ValueError(f"SuiteConfig.{name}={(lo, hi)}: need 0 <= start < stop <= {N_VARIATIONS}")
        (a, b), (c, d) = self.train_variations, self.eval_variations
        if a < d and c < b:
            raise ValueError(f"SuiteConfig train_variations {(a, b)} and eval_variations {(c, d)} overlap: held-out states must be unseen")

    def variations(self, split: str) -> range:
        """The variation indices of ``split`` ("train" or "eval")."""
        _check_choice("split", split, ("train", "eval"))
        return range(*(self.train_variations if split == "train" else self.eval_variations))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able copy (for meta.json and result dicts)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def make_suite_config(preset_or_tasks: str | tuple[str, ...] | list[str] = "smoke", **overrides: Any) -> SuiteConfig:
    """A SuiteConfig from a preset name ("mt10", "mt10-vision", "smoke") or a list of task names."""
    if isinstance(preset_or_tasks, str):
        if preset_or_tasks not in PRESETS:
            near = difflib.get_close_matches(preset_or_tasks, list(PRESETS) + list(ALL_TASKS), n=3)
            raise ValueError(f"unknown suite preset {preset_or_tasks!r}; presets: {sorted(PRESETS)}; nearest names: {near}")
        return SuiteConfig(**{"tasks": PRESETS[preset_or_tasks], "preset": preset_or_tasks, **overrides})
    return SuiteConfig(**{"tasks": tuple(preset_or_tasks), **overrides})


def check_task(task: str) -> str:
    """``task`` if it is a Meta-World v3 task name, else a ValueError naming the nearest ones."""
    if task not in PARAPHRASES:
        near = difflib.get_close_matches(task, ALL_TASKS, n=5, cutoff=0.4)
        raise ValueError(f"unknown Meta-World task {task!r}; nearest: {near}; valid tasks: {', '.join(ALL_TASKS)}")
    return task


def _check_choice(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"SuiteConfig.{name}={value!r}: allowed {allowed}")


__all__ = ["SuiteConfig", "make_suite_config", "check_task", "PRESETS", "ALL_TASKS", "replace"]
