"""Demonstration generation and the DemoStore: round trip, determinism, damage, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vlm4vla.data import demos as demos_module
from vlm4vla.data.demos import DemoConfig, DemoStore, DemoStoreError, generate_demonstrations
from vlm4vla.envs import make_suite_config
from vlm4vla.envs.ground_truth import TASK_OBJECT

SUITE = make_suite_config("smoke", max_episode_steps=120)
CFG = DemoConfig(episodes_per_task=2, seed=0, workers=0)
FILES = ("frames.npy", "depth.npy", "segmentation.npy", "frames.parquet", "episodes.parquet", "meta.json", "DATASHEET.md")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_demonstrations(SUITE, CFG, tmp_path_factory.mktemp("demos") / "store")


def test_round_trip_shapes_and_columns(store_path: Path) -> None:
    store = DemoStore.open(store_path)
    n = len(store)
    assert store.frames.shape == (n, 64, 64, 3) and store.frames.dtype == np.uint8
    assert store.depth.shape == (n, 64, 64) and store.segmentation.shape == (n, 64, 64)
    assert store.actions.shape == (n, 4) and np.abs(store.actions).max() <= 1.0
    assert len(store.episodes) == store.meta["n_episodes"] == 4  # experts solve both smoke tasks
    assert store.episodes["length"].sum() == n
    for row in store.episodes.itertuples():  # every episode's rows are contiguous and ordered
        frames = store.table.iloc[row.start : row.start + row.length]
        assert (frames["episode_index"] == row.episode_index).all()
        assert list(frames["frame_index"]) == list(range(row.length))
        assert (frames["task"] == row.task).all() and row.variation < 30  # train variations only
    assert store.meta["expert_success"]["drawer-close-v3"] == {"successes": 2, "attempts": 2}
    assert all((store_path / f).exists() for f in FILES)
    assert not list(store_path.parent.glob(".store.tmp-*"))


def test_object_keypoints_land_on_object_pixels_in_the_stored_frames(store_path: Path) -> None:
    store = DemoStore.open(store_path)
    rows = store.table.index[store.table["task"] == "button-press-topdown-v3"][:20]
    hits = [store.segmentation[r][int(y), int(x)] == TASK_OBJECT for r in rows for x, y in [store.table.at[r, "object_px"]]]
    assert np.mean(hits) >= 0.9


def test_same_seed_gives_identical_files(store_path: Path, tmp_path: Path) -> None:
    again = generate_demonstrations(SUITE, CFG, tmp_path / "again")
    for name in FILES:
        assert (store_path / name).read_bytes() == (again / name).read_bytes(), name


@pytest.mark.parametrize("name", ["frames.npy", "frames.parquet", "meta.json"])
def test_missing_or_damaged_files_name_the_file_and_the_fix(store_path: Path, tmp_path: Path, name: str) -> None:
    import shutil

    copy = Path(shutil.copytree(store_path, tmp_path / "copy"))
    (copy / name).write_bytes(b"garbage")
    with pytest.raises(DemoStoreError, match=f"{name}.*damaged.*generate_demonstrations"):
        DemoStore.open(copy)
    (copy / name).unlink()
    with pytest.raises(DemoStoreError, match=f"{name} is missing"):
        DemoStore.open(copy)


def test_truncated_array_is_reported(store_path: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(store_path, tmp_path / "copy"))
    arr = np.load(copy / "depth.npy")
    np.save(copy / "depth.npy", arr[:-3])
    with pytest.raises(DemoStoreError, match="depth.npy"):
        DemoStore.open(copy)


def test_interrupted_generation_leaves_the_old_store(store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    target = Path(shutil.copytree(store_path, tmp_path / "store"))
    before = (target / "frames.npy").read_bytes()

    def boom(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(demos_module, "_finalise", boom)
    with pytest.raises(KeyboardInterrupt):
        generate_demonstrations(make_suite_config(["drawer-close-v3"], max_episode_steps=5), CFG, target)
    assert (target / "frames.npy").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["store"]
