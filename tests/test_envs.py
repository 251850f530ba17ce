"""Task suites, instructions, fixed initial states and ground-truth projections (Meta-World)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vlm4vla.envs import ALL_TASKS, PRESETS, SuiteConfig, instructions_for, make_jobs, make_suite_config
from vlm4vla.envs.ground_truth import GRIPPER, TASK_OBJECT
from vlm4vla.envs.sim import TaskEnv, variation_table


def test_presets_have_ten_or_two_valid_tasks() -> None:
    assert len(PRESETS["mt10"]) == len(PRESETS["mt10-vision"]) == 10 and len(PRESETS["smoke"]) == 2
    for tasks in PRESETS.values():
        assert set(tasks) <= set(ALL_TASKS)
    assert make_suite_config("mt10", image_size=96).image_size == 96


def test_unknown_task_and_preset_name_the_nearest_valid_ones() -> None:
    with pytest.raises(ValueError, match="button-press-topdown-v3"):
        make_suite_config(["button-press-topdwn-v3"])
    with pytest.raises(ValueError, match="mt10-vision"):
        make_suite_config("mt10-vison")


@pytest.mark.parametrize("field, value", [("camera", "side"), ("image_size", 4), ("eval_variations", (20, 40)),
                                           ("instruction_split", "test"), ("max_episode_steps", 0)])
def test_invalid_config_fields_are_named(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        SuiteConfig(**{field: value})


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SuiteConfig().image_size = 32  # type: ignore[misc]


def test_every_task_has_four_instructions_with_disjoint_heldout_split() -> None:
    for task in ALL_TASKS:
        train, held = instructions_for(task, "train"), instructions_for(task, "heldout")
        assert len(train) + len(held) >= 4 and held and not set(train) & set(held)
        assert len(set(instructions_for(task, "all"))) == len(train) + len(held)


def test_jobs_are_deterministic_and_use_the_right_variations() -> None:
    suite = make_suite_config("smoke")
    eval_jobs = make_jobs(suite, "eval", 25, seed=3, instruction_split="heldout")
    assert eval_jobs == make_jobs(suite, "eval", 25, seed=3, instruction_split="heldout")
    assert eval_jobs != make_jobs(suite, "eval", 25, seed=4, instruction_split="heldout")
    assert {j.variation for j in eval_jobs} == set(range(30, 50))  # 20 held-out, all used
    train_jobs = make_jobs(suite, "train", 30, seed=0, instruction_split="train")
    assert {j.variation for j in train_jobs} == set(range(30))
    task = suite.tasks[0]
    assert {j.instruction for j in eval_jobs if j.task == task} <= set(instructions_for(task, "heldout"))


def test_variations_are_fixed_and_distinct() -> None:
    table = variation_table("button-press-topdown-v3")
    assert table.shape[0] == 50 and len(np.unique(table, axis=0)) == 50
    variation_table.cache_clear()
    assert np.array_equal(table, variation_table("button-press-topdown-v3"))


@pytest.fixture(scope="module")
def env() -> TaskEnv:
    e = TaskEnv("button-press-topdown-v3", 64, "corner", 200)
    yield e
    e.close()


def test_same_variation_gives_same_initial_state_and_frame(env: TaskEnv) -> None:
    env.reset(31)
    state, frame = env.state.copy(), env.render()
    env.reset(7)
    assert not np.allclose(env.state, state)
    env.reset(31)
    assert np.array_equal(env.state, state) and np.array_equal(env.render(), frame)
    assert frame.dtype == np.uint8 and frame.shape == (64, 64, 3)


def test_projected_keypoints_land_on_their_segmentation_pixels(env: TaskEnv) -> None:
    for variation in (30, 40, 45):
        env.reset(variation)
        gt = env.ground_truth()
        seg = gt["segmentation"]  # (H, W) class ids
        assert gt["depth"].dtype == np.float16 and 0.3 < float(gt["depth"].min()) < 3.0
        x, y = gt["object_px"]  # the button: must be on task-object pixels (3x3 tolerance)
        assert (seg[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] == TASK_OBJECT).any()
        gx, gy = gt["gripper_px"]
        assert (seg[int(gy) - 2 : int(gy) + 3, int(gx) - 2 : int(gx) + 3] == GRIPPER).any()
        far = np.argwhere(seg == TASK_OBJECT).mean(0)  # centroid (row, col) of the object
        assert np.hypot(far[0] - y, far[1] - x) < 12
