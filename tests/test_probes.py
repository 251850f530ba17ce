"""Embodied QA labels against the simulator, probe scoring with known answers, linear probes, all families."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlm4vla.backbones.base import BackboneConfig, make_backbone
from vlm4vla.data.demos import DemoConfig, DemoStore, generate_demonstrations
from vlm4vla.data.embodied_qa import KINDS, EmbodiedQAConfig, make_embodied_qa, object_name, parse_point, segmentation_class
from vlm4vla.envs import make_suite_config
from vlm4vla.envs.ground_truth import GRIPPER, TASK_OBJECT, camera_matrices
from vlm4vla.envs.sim import GRIPPER_OPEN_THRESHOLD, TaskEnv
from vlm4vla.probes import general_vqa_accuracy
from vlm4vla.probes import embodied
from vlm4vla.probes.embodied import EmbodiedProbeConfig, embodied_probes, option_logprobs
from vlm4vla.probes.linear import LinearProbeConfig, episode_split, image_token_embeddings, ridge_r2
from vlm4vla.probes.summary import ProbeConfig, robot_probe_summary

torch.set_num_threads(1)
SUITE = make_suite_config("smoke", max_episode_steps=120)
QA = EmbodiedQAConfig(n_per_kind=60, seed=0)
TINY = {"hidden_size": 64, "text_layers": 2, "vision_layers": 2, "heads": 2, "vocab_size": 512}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    """2 expert episodes of each smoke task (2 per task: the linear probe holds one out)."""
    path = generate_demonstrations(SUITE, DemoConfig(episodes_per_task=2, seed=0, workers=0),
                                   tmp_path_factory.mktemp("probe_demos") / "store")
    return DemoStore.open(path)


def test_items_are_deterministic_balanced_and_in_corpus_style(store: DemoStore) -> None:
    for kind in KINDS:
        a, b = make_embodied_qa(store, kind, QA), make_embodied_qa(store, kind, QA)
        assert len(a) > 0 and a.equals(b), kind
        assert a["prompt"].str.endswith(("?", "coordinates.")).all()
    grip = make_embodied_qa(store, "gripper", QA)["answer"].value_counts()
    assert set(grip.index) == {"open", "closed"} and abs(grip["open"] - grip["closed"]) <= 1
    with pytest.raises(ValueError, match="kind"):
        make_embodied_qa(store, "colour", QA)


def test_pointing_answer_lands_on_the_named_things_segmentation(store: DemoStore) -> None:
    items = make_embodied_qa(store, "pointing", QA)
    assert segmentation_class("gripper") == GRIPPER and segmentation_class("drawer") == TASK_OBJECT
    assert set(items["target"]) == {"gripper", object_name("button-press-topdown-v3"), object_name("drawer-close-v3")}
    for it in items.itertuples():
        x, y = parse_point(it.answer)
        seg = store.segmentation[it.row]
        assert seg[int(y), int(x)] == segmentation_class(it.target), it
        px = store.table.at[it.row, "gripper_px" if it.target == "gripper" else "object_px"]
        assert max(abs(int(px[0]) - x), abs(int(px[1]) - y)) <= QA.visible_radius  # near the 3-D projection


def test_depth_order_agrees_with_camera_depth_of_the_3d_points(store: DemoStore) -> None:
    """Independent of the depth image: distance along the camera axis from the simulator's camera pose."""
    env = TaskEnv("drawer-close-v3", 64, SUITE.camera, 120)
    env.reset(0)
    _, rot, pos = camera_matrices(env.env.model, env.env.data, SUITE.camera, 64)  # the camera is fixed
    env.close()
    items = make_embodied_qa(store, "depth_order", QA)
    depth = lambda p: float(-((np.asarray(p) - pos) @ rot)[2])  # noqa: E731
    agree = [(depth(store.table.at[r, "ee_pos"]) < depth(store.table.at[r, "object_pos"])) == (a == "gripper")
             for r, a in zip(items["row"], items["answer"])]
    assert len(agree) >= 10 and np.mean(agree) >= 0.8


def test_relations_agree_with_segmentation_centroids(store: DemoStore) -> None:
    items = make_embodied_qa(store, "relation", QA)
    assert set(items["answer"]) == {"left", "right", "above", "below"}
    agree = []
    for it in items.itertuples():
        a, b = it.target.split("|")
        seg = store.segmentation[it.row]
        (ya, xa), (yb, xb) = [np.argwhere(seg == segmentation_class(n)).mean(0) for n in (a, b)]
        truth = {"left": xa < xb, "right": xa > xb, "above": ya < yb, "below": ya > yb}[it.answer]
        agree.append(truth)
    assert np.mean(agree) >= 0.8


def test_gripper_answers_follow_the_simulators_opening(store: DemoStore) -> None:
    items = make_embodied_qa(store, "gripper", QA)
    opening = store.table["gripper_opening"].to_numpy()[items["row"]]
    assert ((opening > GRIPPER_OPEN_THRESHOLD) == (items["answer"] == "open")).all()


class _Answering:
    """A stand-in backbone that answers from a lookup (oracle) or always the same (null)."""

    def __init__(self, store: DemoStore, answer: str | None) -> None:
        self.answer = answer
        items = [make_embodied_qa(store, k, QA) for k in KINDS]
        self.truth = {(store.frames[r].tobytes(), p): a for df in items for r, p, a in zip(df["row"], df["prompt"], df["answer"])}

    def generate(self, images: np.ndarray, prompts: list[str], max_new_tokens: int = 4) -> list[str]:
        return [self.answer if self.answer is not None else self.truth[(im.tobytes(), p)] for im, p in zip(images, prompts)]

    def option_logprobs(self, images: np.ndarray, prompts: list[str], options: list[list[str]]) -> np.ndarray:
        """Oracle: 0 for the true option, -1 for the other; null: the same for every option (first wins)."""
        answers = self.generate(images, prompts)
        return np.array([[0.0 if self.answer is not None or o == a else -1.0 for o in opts]
                         for opts, a in zip(options, answers)])


def test_embodied_scores_oracle_perfect_and_null_at_chance(store: DemoStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embodied, "option_logprobs", lambda backbone, *args: backbone.option_logprobs(*args))
    cfg = EmbodiedProbeConfig(qa=QA)
    oracle = embodied_probes(_Answering(store, None), store, cfg)
    assert oracle["pointing_error_px"]["score"] < 1.0 and oracle["pointing_error_px"]["hit_rate"] == 1.0
    for key in ("depth_order_acc", "relation_acc", "gripper_acc"):
        assert oracle[key]["score"] == 1.0 and oracle[key]["generated"] == 1.0 and oracle[key]["parsed"] == 1.0, key
    null = embodied_probes(_Answering(store, "nothing"), store, cfg)
    assert null["pointing_error_px"]["score"] == pytest.approx(null["pointing_error_px"]["chance"])
    assert null["pointing_error_px"]["parsed"] == 0.0 and null["gripper_acc"]["generated"] == 0.0
    assert null["gripper_acc"]["chance"] == pytest.approx(0.5, abs=0.02)
    assert null["relation_acc"]["chance"] >= 0.5
    # a model without a preference always picks the first option: its ranked accuracy is that option's share
    for key in ("depth_order_acc", "relation_acc", "gripper_acc"):
        answers = null[key]["answers"]
        first = answers["options"].str.split("|").str[0]
        assert null[key]["score"] == pytest.approx((first == answers["answer"]).mean()), key
        assert null[key]["score"] <= null[key]["chance"] + 1e-9, key


def test_option_logprobs_are_the_lm_loss_of_each_answer_and_ignore_padding(store: DemoStore) -> None:
    """The ranked choice scores an answer by the training loss's own token log-likelihoods, per row:
    a batch with prompts of different lengths (left padding) gives each row its single-row value."""
    torch.manual_seed(0)
    backbone = make_backbone(BackboneConfig(family="qwen2_vl", **TINY)).eval()
    images = np.asarray(store.frames[:3])
    prompts = ["is the gripper open or closed?", "left or right?", "which is closer to the camera, the drawer or the handle?"]
    options = [["open", "closed"], ["left", "right"], ["drawer", "handle"]]
    batched = option_logprobs(backbone, images, prompts, options)
    assert batched.shape == (3, 2) and np.all(batched < 0)
    for i in range(3):
        for j in range(2):
            single = option_logprobs(backbone, images[i:i + 1], prompts[i:i + 1], [options[i]])[0, j]
            inputs = backbone.encode(images[i:i + 1], prompts[i:i + 1], [options[i][j]])
            with torch.no_grad():
                n_tokens = int((inputs["labels"][:, 1:] != -100).sum())
                expected = -float(backbone.lm_loss(inputs)) * n_tokens
            assert single == pytest.approx(expected, rel=1e-4, abs=1e-4)
            assert batched[i, j] == pytest.approx(single, rel=1e-3, abs=1e-3)


def test_ridge_recovers_a_linear_signal_and_not_a_shuffled_one() -> None:
    rng = np.random.default_rng(0)
    episodes, tasks = np.repeat(np.arange(12), 40), np.repeat(np.arange(12) % 2, 40)
    x = rng.normal(size=(len(episodes), 30))
    y = x @ rng.normal(size=(30, 3)) + 0.01 * rng.normal(size=(len(episodes), 3))
    test = episode_split(episodes, tasks, 0.3, seed=0)
    assert not set(episodes[test]) & set(episodes[~test]) and test.any()
    cfg = LinearProbeConfig(n_boot=200)
    good = ridge_r2(x, y, episodes, tasks, test, cfg)
    assert good["score"] > 0.99 and good["ci_low"] > 0.98 and good["n_episodes"] == len(set(episodes[test]))
    bad = ridge_r2(x, rng.permutation(y), episodes, tasks, test, cfg)
    assert bad["score"] < 0.1 and bad["ci_low"] < 0.1


@pytest.mark.parametrize("family", ["qwen2_vl", "paligemma", "idefics3", "llava"])
def test_all_probes_run_on_a_tiny_random_backbone(store: DemoStore, family: str) -> None:
    backbone = make_backbone(BackboneConfig(family=family, **TINY))
    emb = image_token_embeddings(backbone, np.asarray(store.frames[:2]))
    assert emb.shape == (2, backbone.n_image_tokens, backbone.hidden_size)
    cfg = ProbeConfig(EmbodiedProbeConfig(qa=EmbodiedQAConfig(n_per_kind=8)),
                      LinearProbeConfig(frame_stride=3, n_boot=50), random_twin=family == "qwen2_vl")
    summary = robot_probe_summary(backbone, store, cfg)
    for key in ("probe_pointing_error_px", "probe_depth_order_acc", "probe_relation_acc", "probe_gripper_acc",
                "probe_linear_ee_r2", "probe_linear_object_r2", "probe_linear_gripper_r2"):
        assert np.isfinite(summary[key]) and np.isfinite(summary[f"{key}_ci_low"]), key
        assert f"{key}_n" in summary
    assert all(k.startswith("probe_") for k in summary)
    assert summary["probe_pointing_error_px_chance"] > 0 and "probe_linear_ee_r2_pixels" in summary
    assert 0 <= summary["probe_gripper_acc_generated"] <= 1
    assert ("probe_linear_ee_r2_random_init" in summary) == (family == "qwen2_vl")


def test_general_probe_still_importable_from_the_package() -> None:
    assert callable(general_vqa_accuracy)
