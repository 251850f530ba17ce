"""LIBERO demonstrations: config checks, the store writer against DemoStore (no LIBERO needed), and one
recorded episode through .venv-libero (skipped with the reason where that environment is missing)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from vlm4vla.data.demos import DemoStore
from vlm4vla.envs import libero as L
from vlm4vla.envs import libero_demos as D
from vlm4vla.envs.libero_datasheet import pixel_class_agreement

REPO = Path(__file__).resolve().parents[1]
LIBERO_PYTHON = Path(os.environ.get("VLM4VLA_LIBERO_PYTHON", REPO / ".venv-libero/bin/python"))


@pytest.mark.parametrize("fields, message", [
    ({"suite": "libero_goal"}, r"suite='libero_goal': allowed is one of \('libero_object', 'libero_spatial'\)"),
    ({"tasks": [0, 10]}, r"tasks=\(0, 10\): allowed is a non-empty list of distinct task ids in 0..9"),
    ({"tasks": [1, 1]}, r"tasks=\(1, 1\): allowed is a non-empty list of distinct"),
    ({"tasks": []}, r"tasks=\(\): allowed is a non-empty list"),
    ({"tasks": "all"}, r"tasks='all': allowed is a list of task ids"),
    ({"episodes_per_task": 0}, r"episodes_per_task=0: allowed is an integer >= 1"),
    ({"first_init": 45, "episodes_per_task": 10}, r"first_init \+ episodes_per_task=55: allowed is <= 50 official"),
    ({"image_size": 8}, r"image_size=8: allowed is 16..512 pixels"),
    ({"camera": "frontview"}, r"camera='frontview': allowed is one of \('agentview', 'robot0_eye_in_hand'\)"),
])
def test_bad_config_names_field_value_and_allowed(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        D.LiberoDemoConfig(**fields)


def test_config_round_trips_through_json() -> None:
    cfg = D.LiberoDemoConfig(tasks=[3, 7], episodes_per_task=2, first_init=40)
    assert D.LiberoDemoConfig(**json.loads(json.dumps(cfg.as_dict()))) == cfg
    assert list(cfg.init_ids) == [40, 41] and cfg.tasks == (3, 7)


def test_missing_libero_fails_clearly_or_leaves_a_note(tmp_path: Path) -> None:
    cfg = D.LiberoDemoConfig(tasks=[0], episodes_per_task=1)
    missing = tmp_path / "no-venv/bin/python"
    out = tmp_path / "store"
    out.mkdir()
    (out / "keep.txt").write_text("previous store")
    with pytest.raises(D.LiberoUnavailable, match=r"no LIBERO interpreter at .*no-venv/bin/python; create it with `LIBERO=1"):
        D.generate_libero_demonstrations(cfg, out, missing)
    assert (out / "keep.txt").read_text() == "previous store"  # the old store survives a failed run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no temporary folder left behind
    assert D.generate_libero_demonstrations(cfg, out, missing, require=False) is None
    assert [p.name for p in out.iterdir()] == [D.NOT_RECORDED]
    assert "no LIBERO interpreter" in (out / D.NOT_RECORDED).read_text()


def test_python_without_libero_is_named() -> None:
    if L.libero_available():
        pytest.skip("this interpreter has LIBERO")
    assert "has no libero / robosuite" in D.libero_unavailable_reason(sys.executable)


def _fake_recording(folder: Path, lengths: list[int], size: int = 16) -> None:
    """What record_raw writes, for two attempts of task 0 (one failed) and the given successful lengths."""
    (folder / "episodes").mkdir(parents=True)
    rng = np.random.default_rng(0)
    attempts = [{"task_id": 0, "task": "pick_soup", "instruction": "pick up the soup", "init_id": 0, "job_episode": 0,
                 "success": False, "steps": 280, "phase": "lower", "seconds": 4.0, "reward": 0.0, "episode_index": None}]
    files = {name: open(folder / f"{name}.raw", "wb") for name in D.ARRAYS}
    for i, n in enumerate(lengths):
        seg = np.zeros((n, size, size), np.uint8)
        seg[:, 4:8, 2:6] = L.TASK_OBJECT  # the object covers columns 2-5 of rows 4-7
        arrays = {"frames": rng.integers(0, 255, (n, size, size, 3)), "depth": np.full((n, size, size), 0.9), "segmentation": seg}
        for name, dtype in D.ARRAYS.items():
            files[name].write(arrays[name].astype(dtype).tobytes())
        object_px = np.tile([[3.5, 5.5]], (n, 1))  # column 3, row 5: on the object
        object_px[-1] = [12.5, 12.5]  # last frame: off the object
        cols = {"action": rng.uniform(-1, 1, (n, 7)), "state": rng.normal(size=(n, 137)), "ee_pos": np.zeros((n, 3)),
                "gripper_opening": np.linspace(1, 0, n), "gripper_open": np.linspace(1, 0, n) > 0.5,
                "object_pos": np.zeros((n, 3)), "objects_pos": np.zeros((n, 21)), "goal_pos": np.ones((n, 3)),
                "gripper_px": np.zeros((n, 2)), "object_px": object_px, "goal_px": np.zeros((n, 2))}
        np.savez(folder / "episodes" / f"{i:06d}.npz", **cols)
        attempts.append({**attempts[0], "init_id": i + 1, "job_episode": i + 1, "success": True, "steps": n,
                         "seconds": 2.0, "reward": 1.0, "episode_index": i})
    for f in files.values():
        f.close()
    (folder / "attempts.json").write_text(json.dumps(attempts))
    tasks = [{"task_id": 0, "task": "pick_soup", "instruction": "pick up the soup", "objects": [], "goal": [], "max_episode_steps": 280}]
    (folder / "tasks.json").write_text(json.dumps({"tasks": tasks, "versions": {"robosuite": "1.4.0"}}))


def test_writer_output_opens_as_a_demo_store(tmp_path: Path) -> None:
    cfg = D.LiberoDemoConfig(tasks=[0], episodes_per_task=3, image_size=16)
    _fake_recording(tmp_path, [5, 4])
    D._finalise(tmp_path, cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["frames.npy", "depth.npy", "segmentation.npy", "frames.parquet", "episodes.parquet", "meta.json", "DATASHEET.md"])
    store = DemoStore.open(tmp_path)
    assert len(store) == 9 and store.actions.shape == (9, 7) and store.frames.shape == (9, 16, 16, 3)
    assert store.depth.dtype == np.float16 and store.segmentation[0, 5, 3] == L.TASK_OBJECT
    assert list(store.episodes["start"]) == [0, 5] and list(store.episodes["variation"]) == [1, 2]
    first = store.table[store.table.episode_index == 0]
    assert list(first["progress"]) == [0.0, 0.2, 0.4, 0.6, 0.8] and len(first["state"].iloc[0]) == 137
    assert store.meta["expert_success"] == {"pick_soup": {"successes": 2, "attempts": 3}}
    assert store.meta["action_dim"] == 7 and store.meta["segmentation_classes"]["5"] == "other_object"
    assert pixel_class_agreement(store, "object_px", L.TASK_OBJECT) == pytest.approx(7 / 9)
    sheet = (tmp_path / "DATASHEET.md").read_text()
    assert "| 0 | pick up the soup | 2/3 | 2 | 9 | 4.5 | 4-5 |" in sheet and "| gripper |" in sheet


# ---------------------------------------------------------------------------------------------
# One real episode, recorded in .venv-libero (about 30 s)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    reason = D.libero_unavailable_reason(LIBERO_PYTHON)
    if reason:
        pytest.skip(reason)
    cfg = D.LiberoDemoConfig(tasks=[0], episodes_per_task=1)
    return DemoStore.open(D.generate_libero_demonstrations(cfg, tmp_path_factory.mktemp("libero") / "store", LIBERO_PYTHON))


@pytest.mark.slow
def test_recorded_object_projection_lands_on_the_object(recorded: DemoStore) -> None:
    x, y = recorded.table.loc[0, "object_px"]  # first frame: the object stands free on the table
    seg = np.asarray(recorded.segmentation[0])
    assert seg[int(y), int(x)] == L.TASK_OBJECT, f"object_px ({x:.1f}, {y:.1f}) is on class {seg[int(y), int(x)]}"
    gx, gy = recorded.table.loc[0, "goal_px"]
    assert seg[int(gy), int(gx)] == L.GOAL
    assert pixel_class_agreement(recorded, "object_px", L.TASK_OBJECT) > 0.6  # hidden by the hand while carried


@pytest.mark.slow
def test_recorded_depth_and_columns_are_sane(recorded: DemoStore) -> None:
    depth = np.asarray(recorded.depth, dtype=np.float32)
    assert np.isfinite(depth).all() and depth.min() > 0.1 and np.median(depth) < 3.0  # metres, table ~1 m away
    n = len(recorded)
    assert recorded.actions.shape == (n, 7) and np.abs(recorded.actions).max() <= 1.0
    assert recorded.meta["expert_success"][recorded.episodes.task[0]] == {"successes": 1, "attempts": 1}
    assert recorded.table["progress"].is_monotonic_increasing and recorded.table["progress"].iloc[0] == 0.0
    assert recorded.table["instruction"].iloc[0] == "pick up the alphabet soup and place it in the basket"
    assert set(np.unique(recorded.segmentation)) >= {L.BACKGROUND, L.ROBOT, L.GRIPPER, L.TASK_OBJECT, L.GOAL}


# --- paper profile: LIBERO's official HDF5 demonstrations, replayed for frames and ground truth ---

_WRITE_OFFICIAL = r'''
import json, sys
from pathlib import Path
import h5py, numpy as np
sys.path.insert(0, sys.argv[1])
from vlm4vla.envs import libero as L
from vlm4vla.envs.libero_expert import PickPlaceExpert
env = L.LiberoTaskEnv("libero_object", 0, image_size=64)
expert, states, actions, frames = PickPlaceExpert(), [], [], []
env.reset(3); env.settle(10); expert.reset()
while True:
    a = expert.act(env)
    states.append(env.sim.get_state().flatten()); actions.append(a); frames.append(env.render())
    info = env.step(a)
    if info["success"] or info["truncated"]:
        break
out = Path(sys.argv[2]) / f"{env.name}_demo.hdf5"
with h5py.File(out, "w") as f:
    data = f.create_group("data")
    data.attrs["problem_info"] = json.dumps({"language_instruction": env.instruction})
    demo = data.create_group("demo_0")
    demo["states"], demo["actions"] = np.stack(states), np.stack(actions)
    demo["obs/agentview_rgb"] = np.stack([fr[::-1] for fr in frames])  # stored as robosuite renders it (bottom-up)
    demo["dones"] = np.eye(len(actions))[-1]
np.save(Path(sys.argv[2]) / "expected_frames.npy", np.stack(frames))
print(info["success"], len(actions))
'''


@pytest.mark.slow
def test_official_hdf5_demos_replay_to_the_same_frames_with_ground_truth(tmp_path: Path) -> None:
    reason = D.libero_unavailable_reason(LIBERO_PYTHON)
    if reason:
        pytest.skip(reason)
    official = tmp_path / "libero_object"
    official.mkdir()
    import subprocess
    done = subprocess.run([str(LIBERO_PYTHON), "-c", _WRITE_OFFICIAL, str(REPO / "lib"), str(official)],
                          capture_output=True, text=True, env=D._recorder_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2] == "True"  # the written demo succeeds
    cfg = D.LiberoDemoConfig(tasks=[0], episodes_per_task=1, source="official", official_dir=str(official))
    store = DemoStore.open(D.generate_libero_demonstrations(cfg, tmp_path / "store", LIBERO_PYTHON))
    expected = np.load(official / "expected_frames.npy")
    assert len(store) == len(expected)
    assert np.abs(np.asarray(store.frames, np.int16) - expected).mean() < 1.0  # same states, same pictures
    assert store.episodes.loc[0, "variation"] == 0 and store.meta["demos"]["source"] == "official"
    x, y = store.table.loc[0, "object_px"]
    assert np.asarray(store.segmentation[0])[int(y), int(x)] == L.TASK_OBJECT  # ground truth as for the expert's stores
    assert "official demonstrations" in (tmp_path / "store" / "DATASHEET.md").read_text()


def test_official_source_errors_name_the_field_and_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"official_dir=None: allowed is a folder of LIBERO's <task name>_demo.hdf5"):
        D.LiberoDemoConfig(source="official")
    with pytest.raises(ValueError, match=r"source='teleop': allowed is one of \('expert', 'official'\)"):
        D.LiberoDemoConfig(source="teleop")
    cfg = D.LiberoDemoConfig(suite="libero_10", tasks=[0], source="official", official_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"no official LIBERO demonstrations for task 'some_task': expected .*some_task_demo.hdf5"):
        D._official_file(cfg, "some_task")


def test_a_corrupted_official_file_is_named_by_the_recorder(tmp_path: Path) -> None:
    reason = D.libero_unavailable_reason(LIBERO_PYTHON)
    if reason:
        pytest.skip(reason)
    (tmp_path / "pick_up_the_alphabet_soup_and_place_it_in_the_basket_demo.hdf5").write_bytes(b"not hdf5 at all")
    cfg = D.LiberoDemoConfig(tasks=[0], episodes_per_task=1, source="official", official_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match=r"alphabet_soup_and_place_it_in_the_basket_demo.hdf5 is not a readable LIBERO HDF5 file"):
        D.generate_libero_demonstrations(cfg, tmp_path / "store", LIBERO_PYTHON)
    assert not (tmp_path / "store").exists()  # nothing half-written
