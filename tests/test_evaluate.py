"""The evaluation harness against policies whose answer is known (STYLE.md, "Tests")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vlm4vla.constants import OBS_IMAGE, TASK
from vlm4vla.envs import make_jobs, make_suite_config
from vlm4vla.evaluate import BlindReplayPolicy, EvalConfig, ExpertPolicy, NullPolicy, VideoRecorder, evaluate

SMOKE = make_suite_config("smoke")


@pytest.fixture(scope="module")
def expert_result() -> dict[str, Any]:
    # 8 episodes per task in 2 worker processes: a broken harness (wrong state, flipped actions,
    # wrong variation) gives ~0, the experts ~1 (Meta-World's own harness test asserts >= 0.8).
    return evaluate(ExpertPolicy(), SMOKE, EvalConfig(episodes_per_task=8, seed=0, workers=2, envs_per_task=4))


def test_scripted_experts_score_high(expert_result: dict[str, Any]) -> None:
    assert expert_result["mean_success"] >= 0.9
    for task, row in expert_result["per_task"].items():
        assert row["n"] == 8 and row["success_rate"] >= 0.8, task
        lo, hi = row["ci95"]
        assert lo - 1e-9 <= row["success_rate"] <= hi + 1e-9  # stats.wilson_interval: 1 - 1e-16 at n/n
        assert set(row["variations"]) <= set(range(30, 50))  # held-out initial states only


def test_result_is_a_plain_dict_with_seeds_and_config(expert_result: dict[str, Any]) -> None:
    import json

    json.dumps(expert_result)  # plain, JSON-able
    assert expert_result["eval"]["seed"] == 0 and expert_result["suite"]["tasks"] == list(SMOKE.tasks)
    assert len(expert_result["episodes"]) == 16 and expert_result["steps_per_s"] > 0


def test_null_policy_scores_near_zero() -> None:
    result = evaluate(NullPolicy(), SMOKE, EvalConfig(episodes_per_task=3, workers=0, envs_per_task=3, max_steps=30))
    assert result["mean_success"] == 0.0
    assert all(e["length"] == 30 for e in result["episodes"])


def test_same_seed_same_results_and_different_seed_different_states() -> None:
    suite = make_suite_config(["drawer-close-v3"])
    cfg = EvalConfig(episodes_per_task=2, seed=5, workers=0, envs_per_task=2, max_steps=30)
    a, b = evaluate(ExpertPolicy(), suite, cfg), evaluate(ExpertPolicy(), suite, cfg)
    assert a["episodes"] == b["episodes"]  # includes variations, instructions and float returns
    c = make_jobs(suite, "eval", 2, seed=6, instruction_split="train")
    assert [j.variation for j in c] != [e["variation"] for e in a["episodes"]]


class _Recorder(NullPolicy):
    """Null policy with chunk 4 that records the batch sizes it was called with."""

    chunk_size = 4

    def __init__(self) -> None:
        self.calls: list[int] = []

    def act(self, batch: dict[str, Any]) -> np.ndarray:
        assert batch[OBS_IMAGE].dtype == np.uint8 and batch[OBS_IMAGE].shape[1:] == (64, 64, 3)
        self.calls.append(len(batch[TASK]))
        return np.repeat(super().act(batch), 4, axis=1)


def test_one_batched_call_per_k_steps_and_videos(tmp_path: Path) -> None:
    policy = _Recorder()
    video = VideoRecorder(tmp_path, n_per_task=1)
    evaluate(policy, SMOKE, EvalConfig(episodes_per_task=2, workers=0, envs_per_task=2, execute_k=4, max_steps=20), [video])
    assert policy.calls == [4] * 5  # 4 envs live, a new chunk every 4 steps, 20 steps
    assert sorted(p.name for p in video.paths) == sorted(f"{t}_ep000_fail.gif" for t in SMOKE.tasks)
    assert all(p.stat().st_size > 0 for p in video.paths)


def test_blind_replay_executes_a_stored_demo_open_loop() -> None:
    demo = np.tile(np.array([[0.0, 0.0, 0.0, -1.0]], np.float32), (30, 1))
    policy = BlindReplayPolicy({t: [demo] for t in SMOKE.tasks})
    result = evaluate(policy, SMOKE, EvalConfig(episodes_per_task=1, workers=0, execute_k=policy.chunk_size, max_steps=40))
    assert result["mean_success"] == 0.0 and policy.chunk_size == 200  # MAX_EPISODE_STEPS


def test_bad_policy_output_and_config_are_rejected() -> None:
    class Wrong(NullPolicy):
        def act(self, batch: dict[str, Any]) -> np.ndarray:
            return np.zeros((len(batch[TASK]), 1, 7), np.float32)

    with pytest.raises(ValueError, match="expected"):
        evaluate(Wrong(), SMOKE, EvalConfig(episodes_per_task=1, workers=0, max_steps=5))
    with pytest.raises(ValueError, match="execute_k"):
        evaluate(NullPolicy(), SMOKE, EvalConfig(execute_k=2, workers=0))
    with pytest.raises(ValueError, match="episodes_per_task"):
        EvalConfig(episodes_per_task=0)
