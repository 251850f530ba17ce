"""Auxiliary embodied datasets against the simulator, determinism, scoring, and the fine-tuning stage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from vlm4vla.backbones.auxiliary import AuxConfig, aux_corpus, finetune_auxiliary, run_auxiliary
from vlm4vla.backbones.base import BackboneConfig, load_backbone, make_backbone
from vlm4vla.backbones.control_supervision import item_losses
from vlm4vla.data.auxiliary import (TASK_NAMES, WAYPOINT_STEPS, make_auxiliary, parse_numbers, score_answers,
                                    skill_summary, split_episodes)
from vlm4vla.data.corpus import CorpusConfig, make_corpus
from vlm4vla.data.demos import DemoConfig, DemoStore, generate_demonstrations
from vlm4vla.data.embodied_qa import segmentation_class
from vlm4vla.envs import make_suite_config
from vlm4vla.envs.ground_truth import camera_matrices, project_points
from vlm4vla.envs.sim import TaskEnv

torch.set_num_threads(1)
SUITE = make_suite_config("smoke", max_episode_steps=120)
TINY = BackboneConfig(hidden_size=64, text_layers=2, vision_layers=2, heads=2, vocab_size=512)
N = 80


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    """2 expert episodes per smoke task (one per task is held out for the skill probe)."""
    path = generate_demonstrations(SUITE, DemoConfig(episodes_per_task=2, seed=7, workers=0),
                                   tmp_path_factory.mktemp("aux_demos") / "store")
    return DemoStore.open(path)


@pytest.fixture(scope="session")
def corpus():
    return make_corpus(CorpusConfig(n_train=40, n_heldout=16, seed=0))


def test_every_task_is_deterministic_split_and_named(store: DemoStore) -> None:
    for task in TASK_NAMES:
        a, b = make_auxiliary(store, task, N, seed=0), make_auxiliary(store, task, N, seed=0)
        assert len(a) > 10 and a.equals(b), task
        assert (a["aux_task"] == task).all() and a["answer"].str.len().gt(0).all()
    assert not make_auxiliary(store, "rgbd_spatial", 40, seed=0).equals(make_auxiliary(store, "rgbd_spatial", 40, seed=1))
    train, held = split_episodes(store, "train"), split_episodes(store, "heldout")
    assert len(train) == len(held) == 2 and not set(train) & set(held)
    assert set(make_auxiliary(store, "dense", N, split="heldout")["episode_index"]) <= set(held)
    with pytest.raises(ValueError, match="nearest: \\['pointing'"):
        make_auxiliary(store, "pointng", N)
    with pytest.raises(ValueError, match="vqa_ratio"):
        AuxConfig(vqa_ratio=1.0)


def test_pointing_answers_land_on_the_named_things_segmentation(store: DemoStore) -> None:
    items = make_auxiliary(store, "pointing", N)
    for it in items.itertuples():
        x, y = (int(v) for v in parse_numbers(it.answer))
        assert store.segmentation[it.row][y, x] == segmentation_class(it.target), it


def test_motion_agrees_with_ee_displacement_and_expert_actions(store: DemoStore) -> None:
    items = make_auxiliary(store, "action_vqa", 400)
    motion = items[items["kind"] == "motion"]
    axis = {"right": (0, 1), "left": (0, -1), "forward": (1, 1), "back": (1, -1), "up": (2, 1), "down": (2, -1)}
    agree_actions = []
    for it in motion.itertuples():
        disp = np.subtract(store.table.at[it.row + 4, "ee_pos"], store.table.at[it.row, "ee_pos"])
        k, sign = axis[it.answer]
        assert np.argmax(np.abs(disp)) == k and np.sign(disp[k]) == sign and disp[k] * sign >= 0.01, it
        commanded = store.actions[it.row:it.row + 4, :3].sum(0)  # expert's position deltas (independent source)
        agree_actions.append(np.sign(commanded[k]) == sign)
    assert len(motion) >= 10 and np.mean(agree_actions) >= 0.8
    phase = items[items["kind"] == "phase"]
    progress = store.table["progress"].to_numpy()[phase["row"]]
    assert ((progress < 1 / 3) == (phase["answer"] == "beginning")).all()


def test_waypoints_match_projected_future_ee_positions(store: DemoStore) -> None:
    env = TaskEnv("drawer-close-v3", 64, SUITE.camera, 120)
    env.reset(0)  # the camera is fixed: one pose projects every frame
    items = make_auxiliary(store, "planning", 30)
    for it in items.itertuples():
        future = np.stack([store.table.at[it.row + k, "ee_pos"] for k in WAYPOINT_STEPS])
        assert (store.table.loc[[it.row + k for k in WAYPOINT_STEPS], "episode_index"] == it.episode_index).all()
        pixels = project_points(env.env.model, env.env.data, SUITE.camera, future, 64, env.flip)
        answer = np.array(parse_numbers(it.answer)).reshape(-1, 2)
        assert np.abs(answer - np.floor(pixels)).max() <= 1, it  # float32 rounding at pixel borders
    env.close()


def test_dense_maps_agree_with_downsampled_depth_and_segmentation(store: DemoStore) -> None:
    items = make_auxiliary(store, "dense", 40)
    depth_diffs = []
    for it in items.itertuples():
        digits = [int(c) for c in it.answer.replace(" ", "")]
        for cell, value in enumerate(digits):
            r, c = divmod(cell, 4)
            block = (slice(16 * r, 16 * r + 16), slice(16 * c, 16 * c + 16))
            if it.kind == "depth_map":
                expected = min(max(int((np.median(np.asarray(store.depth[it.row][block], float)) - 0.8) // 0.2), 0), 9)
                depth_diffs.append(abs(value - expected))
            else:
                counts = np.bincount(store.segmentation[it.row][block].ravel(), minlength=5)
                assert counts[value] == counts.max(), it
    assert max(depth_diffs) <= 1 and np.mean(np.equal(depth_diffs, 0)) >= 0.97  # 1 level off only at float16 bin edges


def test_spatial_relations_and_front_behind_agree_with_the_simulator(store: DemoStore) -> None:
    """Left / right / above / below against the simulator's camera projection of the 3-D positions; in front /
    behind against the rendered depth at each thing's visible pixel (the pointing answers, checked above on
    the segmentation) and, for most items, against the distance along the camera axis of the 3-D positions
    (the surface seen is not the body's centre, so not all)."""
    env = TaskEnv("drawer-close-v3", 64, SUITE.camera, 120)
    env.reset(0)  # the camera is fixed: one pose projects every frame
    _, rot, pos = camera_matrices(env.env.model, env.env.data, SUITE.camera, 64)
    position = lambda row, name: np.asarray(store.table.at[row, "ee_pos" if name == "gripper" else "object_pos"])  # noqa: E731
    items = make_auxiliary(store, "spatial_vqa", 200)
    assert set(items["kind"]) == {"relation", "front_behind"}
    points = make_auxiliary(store, "pointing", 10_000).set_index(["row", "target"])["answer"]
    relations, fronts, centres = [], [], []
    for it in items.itertuples():
        a, b = it.target.split("|")
        if it.kind == "relation":
            (xa, ya), (xb, yb) = project_points(env.env.model, env.env.data, SUITE.camera,
                                                np.stack([position(it.row, a), position(it.row, b)]), 64, env.flip)
            relations.append({"left": xa < xb, "right": xa > xb, "above": ya < yb, "below": ya > yb}[it.answer])
        else:
            (ca, ra), (cb, rb) = (parse_numbers(points[(it.row, n)]) for n in (a, b))
            depth = store.depth[it.row]
            fronts.append((float(depth[int(ra), int(ca)]) < float(depth[int(rb), int(cb)])) == (it.answer == "in front"))
            depth_a, depth_b = (float(-((position(it.row, n) - pos) @ rot)[2]) for n in (a, b))
            centres.append((depth_a < depth_b) == (it.answer == "in front"))
    env.close()
    assert len(relations) >= 10 and len(fronts) >= 10
    assert all(relations) and all(fronts) and np.mean(centres) >= 0.6


def test_rgbd_distances_follow_positions_and_depth(store: DemoStore) -> None:
    items = make_auxiliary(store, "rgbd_spatial", 200)
    gap = items[items["kind"] == "distance"]
    true_cm = [100 * np.linalg.norm(np.subtract(store.table.at[r, "ee_pos"], store.table.at[r, "object_pos"]))
               for r in gap["row"]]
    assert len(gap) > 5 and np.abs(gap["answer"].astype(float) - true_cm).max() <= 2.5 + 1e-6
    assert set(items["kind"]) == {"distance", "camera_distance", "depth_order", "size"}


def test_scoring_perfect_null_and_partial_answers() -> None:
    items = pd.DataFrame({"answer": ["left", "10 20", "10 20 30 40 50 60", "0011 2233"],
                          "answer_type": ["word", "points", "points", "grid"], "options": ["left|right", "", "", ""],
                          "kind": ["relation", "pointing", "waypoints", "depth_map"]})
    perfect = score_answers(items, list(items["answer"]), 64)
    assert perfect["score"].tolist() == [1, 1, 1, 1] and perfect["parsed"].all()
    null = score_answers(items, ["", "", "", ""], 64)
    assert null["score"].tolist() == [0, 0, 0, 0] and not null["parsed"].any()
    assert null.loc[1, "error_px"] == pytest.approx(np.hypot(22, 12))  # unparsed -> the image centre
    partial = score_answers(items, ["Left.", "13 24", "10 20", "0011 0000"], 64)
    assert partial["score"].tolist() == [1, 0, 0, 0.5] and partial.loc[1, "error_px"] == pytest.approx(5)
    assert skill_summary("pointing", partial)["skill_metric"] == "error_px"


def test_finetuning_reduces_aux_loss_and_vqa_mix_freezes_vision(store: DemoStore, corpus) -> None:
    backbone = make_backbone(TINY, corpus.train.texts())
    items = make_auxiliary(store, "spatial_vqa", 60, split="train")
    probe = aux_corpus(store, items)
    before = item_losses(backbone, probe, ("aux_spatial_vqa",), n=32)
    cfg = AuxConfig(task="spatial_vqa", steps=25, batch_size=8, lr=1e-3, vqa_ratio=0.3, progress=False)
    history = finetune_auxiliary(backbone, store, corpus.train, cfg, items)
    assert item_losses(backbone, probe, ("aux_spatial_vqa",), n=32) < 0.7 * before and len(history) == 3

    mix = make_backbone(TINY, corpus.train.texts())
    snapshot = {n: p.detach().clone() for n, p in mix.model.named_parameters()}
    finetune_auxiliary(mix, store, corpus.train, AuxConfig(task="vqa_mix", steps=3, batch_size=4, progress=False))
    changed = {mix.groups.group_of(n) for n, p in mix.model.named_parameters() if not torch.equal(p, snapshot[n])}
    assert "vision" not in changed and "language_model" in changed
    assert all(p.requires_grad for p in mix.model.parameters())  # freezing undone afterwards


def test_run_auxiliary_saves_a_loadable_backbone_with_its_summary(store: DemoStore, corpus, tmp_path) -> None:
    base = make_backbone(TINY, corpus.train.texts()).save(tmp_path / "zoo" / "tiny")
    cfg = AuxConfig(task="dense", steps=2, batch_size=4, n_items=40, progress=False)
    summary = run_auxiliary(base, store, corpus.train, corpus.heldout, cfg, tmp_path / "aux", n_probe=6)
    out = tmp_path / "aux" / "tiny-aux-dense"
    assert json.loads((out / "summary.json").read_text())["skill_metric"] == "cell_accuracy"
    for key in ("skill_before", "skill_after", "vqa_before", "vqa_after"):
        assert 0 <= summary[key] <= 1, key
    assert summary["n_probe_items"] == 6 and summary["freeze_variant"] == "none"
    assert len(pd.read_csv(out / "examples.csv")) > 0 and load_backbone(out).card["base"] == "tiny"
