"""LIBERO through the evaluation harness: config and message checks everywhere, known answers (expert,
null, same seed twice) where ``.venv-libero`` exists (skipped with the reason elsewhere)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest

from vlm4vla.envs import Callback
from vlm4vla.envs import libero_eval as E
from vlm4vla.envs.libero_demos import libero_unavailable_reason
from vlm4vla.envs.libero_worker import decode, encode, read_frame

REPO = Path(__file__).resolve().parents[1]
LIBERO_PYTHON = str(os.environ.get("VLM4VLA_LIBERO_PYTHON", REPO / ".venv-libero/bin/python"))


@pytest.mark.parametrize("make, message", [
    (lambda: E.LiberoSuite(suite="libero_100"), r"LiberoSuite.suite='libero_100': allowed is one of \("),
    (lambda: E.LiberoSuite(tasks=(0, 10)), r"LiberoSuite.tasks=\[0, 10\]: allowed is distinct task ids in 0..9 for libero_object"),
    (lambda: E.LiberoSuite(tasks=()), r"LiberoSuite.tasks=\[\]: allowed is distinct task ids"),
    (lambda: E.LiberoSuite(image_size=8), r"LiberoSuite.image_size=8: allowed is 16..512"),
    (lambda: E.LiberoEvalConfig(episodes_per_task=0), r"LiberoEvalConfig.episodes_per_task=0: allowed is >= 1"),
    (lambda: E.LiberoEvalConfig(init_states=(40, 60)), r"LiberoEvalConfig.init_states=\[40, 60\]: allowed is \[first, stop\)"),
])
def test_bad_config_names_field_value_and_allowed(make, message) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_frames_round_trip_arrays_and_header_without_pickle() -> None:
    arrays = {"image": np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3), "state": np.eye(2, dtype=np.float32)}
    stream = io.BytesIO(encode({"slots": [3, 5], "success": [True, False]}, arrays) + encode({"command": "close"}))
    header, back = decode(read_frame(stream))
    assert header == {"slots": [3, 5], "success": [True, False]}
    assert set(back) == {"image", "state"} and all(np.array_equal(back[k], arrays[k]) and back[k].dtype == arrays[k].dtype
                                                   for k in arrays)
    assert decode(read_frame(stream)) == ({"command": "close"}, {})
    assert read_frame(stream) is None  # end of stream


def test_jobs_are_a_seeded_function_of_the_held_out_initial_states() -> None:
    suite = E.LiberoSuite(tasks=(0, 1))
    names = {t: {"name": f"task{t}", "instruction": f"do {t}"} for t in suite.tasks}
    cfg = E.LiberoEvalConfig(episodes_per_task=12, init_states=(40, 50), seed=3)
    jobs = E.make_libero_jobs(suite, cfg, names)
    assert jobs == E.make_libero_jobs(suite, cfg, names)
    first = [j.variation for j in jobs if j.task == "task0"]
    assert sorted(first[:10]) == list(range(40, 50)) and first[10:] == first[:2]  # all held-out states, then wraps
    assert first != [j.variation for j in jobs if j.task == "task1"]  # a permutation per task
    assert {j.instruction for j in jobs if j.task == "task1"} == {"do 1"}
    assert [j.variation for j in E.make_libero_jobs(suite, E.LiberoEvalConfig(episodes_per_task=12, seed=4), names)] != \
        [j.variation for j in jobs]


def test_missing_interpreter_is_named(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"LIBERO evaluation needs its interpreter: no LIBERO interpreter at .*nowhere/python"):
        E.LiberoVectorEnvs(E.LiberoSuite(tasks=(0,)), [0], python=tmp_path / "nowhere/python")


needs_libero = pytest.mark.skipif(libero_unavailable_reason(LIBERO_PYTHON) is not None,
                                  reason=f"LIBERO interpreter unusable: {libero_unavailable_reason(LIBERO_PYTHON)}")


@needs_libero
def test_expert_succeeds_and_null_fails_through_the_harness() -> None:
    suite = E.LiberoSuite(tasks=(0, 1))
    expert = E.evaluate_libero(E.LiberoExpertPolicy(), suite, E.LiberoEvalConfig(episodes_per_task=2, python=LIBERO_PYTHON))
    assert expert["mean_success"] >= 0.7 and expert["overall"]["n"] == 4
    assert all(40 <= v < 50 for t in expert["per_task"].values() for v in t["variations"])
    short = E.LiberoSuite(tasks=(0,), max_episode_steps=60)
    null = E.evaluate_libero(E.LiberoNullPolicy(), short, E.LiberoEvalConfig(episodes_per_task=2, python=LIBERO_PYTHON))
    assert null["mean_success"] == 0 and [e["length"] for e in null["episodes"]] == [60, 60]


class _FrameHashes(Callback):
    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def on_step(self, job, obs, action, step) -> None:
        self.digest.update(f"{job.task}{job.episode}{step}".encode() + obs["image"].tobytes() + action.tobytes())


@needs_libero
def test_same_seed_gives_the_same_initial_states_frames_and_results() -> None:
    suite = E.LiberoSuite(tasks=(0,), max_episode_steps=30)
    cfg = E.LiberoEvalConfig(episodes_per_task=2, seed=5, python=LIBERO_PYTHON)
    runs = []
    for _ in range(2):
        hashes = _FrameHashes()
        result = E.evaluate_libero(E.LiberoExpertPolicy(), suite, cfg, callbacks=[hashes])
        runs.append((hashes.digest.hexdigest(), [(e["variation"], e["length"], e["success"]) for e in result["episodes"]]))
    assert runs[0] == runs[1]


def test_blind_replay_replays_whole_demos_padded_and_seeded() -> None:
    demos = {"t": [np.full((3, 7), 0.5, np.float32), np.full((5, 7), -0.5, np.float32)]}
    policy = E.LiberoBlindReplayPolicy(demos, step_limit=8, seed=1)
    assert policy.chunk_size == 8  # the whole episode in one chunk: run with execute_k = chunk_size
    first = policy.act({E.TASK: ["t", "t", "t", "t"]})
    assert first.shape == (4, 8, 7) and first.dtype == np.float32
    for chunk in first:
        n = 3 if chunk[0, 0] == 0.5 else 5
        assert np.all(chunk[n:, :6] == 0) and np.all(chunk[n:, 6] == chunk[n - 1, 6])  # stay still, gripper as last
    policy.reset()
    assert np.array_equal(policy.act({E.TASK: ["t", "t", "t", "t"]}), first)  # same seed, same demos
    with pytest.raises(KeyError, match=r"no demonstrations of task 'u' to replay; the store has \['t'\]"):
        policy.act({E.TASK: ["u"]})


def test_libero_baselines_load_empty_where_libero_was_not_recorded(tmp_path: Path) -> None:
    from vlm4vla.analysis.baselines import load_baselines

    with pytest.raises(FileNotFoundError, match="dvc repro libero_baselines"):
        load_baselines(tmp_path, "libero")
    (tmp_path / "artifacts/libero-baselines").mkdir(parents=True)
    (tmp_path / "artifacts/libero-baselines/baselines.json").write_text("{}")
    assert load_baselines(tmp_path, "libero").columns.empty
    with pytest.raises(ValueError, match=r"benchmark='calvin': allowed is one of \('metaworld', 'libero'\)"):
        load_baselines(tmp_path, "calvin")
