"""The VLM4VLA adapter: head, ActionQuery, data conventions, freezing and the policy wrapper.

All on tiny random-init backbones ("scratch:<family>:test", hidden 32, one layer each), CPU only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlm4vla.adapter import (STEPS, ActionConventions, ActionHead, HeadConfig, VLAPolicy, apply_freezing,
                             fit_conventions, freeze_preset, load_policy, make_adapter, save_policy)
from vlm4vla.adapter.actions import chunk_window, clipped_fraction
from vlm4vla.adapter.freezing import PRESETS, group_of
from vlm4vla.adapter.losses import action_loss
from vlm4vla.backbones.registry import supported_families
from vlm4vla.constants import INSTRUCTION, OBS_IMAGE
from vlm4vla.train.config import BackboneSpec
from vlm4vla.train.step import build_backbone

TINY_HEAD = HeadConfig(chunk_size=4, arm_dim=3, width=32, branch=(32, 16))
TEXTS = ["close the drawer", "press the button from the top with the gripper now"]  # unequal lengths: padding


def tiny_adapter(family: str = "qwen2_vl", head: HeadConfig = TINY_HEAD, seed: int = 0):
    return make_adapter(build_backbone(BackboneSpec(f"scratch:{family}:test"), seed), head, seed=seed)


def images(n: int = 2, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# ---- head and loss ------------------------------------------------------------------------------
def test_head_shapes_and_init_follow_fcdecoder():
    head = ActionHead(64, HeadConfig(chunk_size=5, arm_dim=3))
    arm, grip = head(torch.randn(7, 64))
    assert arm.shape == (7, 5, 3) and grip.shape == (7, 5)
    assert arm.abs().max() <= 1  # tanh
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in head.arm if isinstance(m, torch.nn.Linear)] == [1024, 512, 256, 15]
    assert [m.out_features for m in head.projection if isinstance(m, torch.nn.Linear)] == [32, 1024]
    assert all(float(m.bias.detach().abs().max()) == 0 for m in linears)
    w = head.arm[0].weight.detach()  # Xavier-uniform bound sqrt(6 / (fan_in + fan_out))
    assert float(w.abs().max()) <= (6 / (1024 + 1024)) ** 0.5 and float(w.std()) > 0.01


def test_reference_head_is_about_6_6m_parameters_for_a_2048_wide_model():
    n = sum(p.numel() for p in ActionHead(2048, HeadConfig(arm_dim=6, chunk_size=10)).parameters())
    assert 6.4e6 < n + 2048 < 6.8e6  # STUDY.md: "about 6.6M for a 2048-wide model"


def test_head_config_errors_name_field_value_and_allowed():
    with pytest.raises(ValueError, match=r"arm_loss='l1'.*'huber', 'mse'"):
        HeadConfig(arm_loss="l1")
    with pytest.raises(ValueError, match=r"chunk_size=0"):
        HeadConfig(chunk_size=0)


def test_loss_is_huber_plus_001_bce():
    arm, target = torch.full((2, 4, 3), 0.5), torch.zeros(2, 4, 3)
    logits, grip = torch.zeros(2, 4), torch.ones(2, 4)
    terms = action_loss(arm, logits, target, grip, HeadConfig())
    assert torch.isclose(terms["loss_arm"], torch.tensor(0.125))  # 0.5 * 0.5**2 (Huber, delta 1)
    assert torch.isclose(terms["loss"], 0.125 + 0.01 * torch.log(torch.tensor(2.0)))
    mse = action_loss(arm, logits, target, grip, HeadConfig(arm_loss="mse"))
    assert torch.isclose(mse["loss_arm"], torch.tensor(0.25))


# ---- data conventions ---------------------------------------------------------------------------
def test_conventions_round_trip_and_gripper_mapping():
    rng = np.random.default_rng(0)
    actions = np.concatenate([rng.uniform(-1, 1, (500, 3)), rng.choice([-1.0, 1.0], (500, 1))], 1)
    conv = fit_conventions(actions)
    arm, grip = conv.encode(actions)
    assert arm.min() >= -1 and arm.max() <= 1 and set(np.unique(grip)) == {0.0, 1.0}
    back = conv.decode(arm, np.where(grip > 0.5, 3.0, -3.0))
    assert np.array_equal(back[:, 3], actions[:, 3])
    inside = np.all(np.abs(conv.encode(actions)[0]) < 1, axis=1)  # not clipped -> exact inverse
    np.testing.assert_allclose(back[inside, :3], actions[inside, :3], atol=1e-5)
    assert 0.2 < clipped_fraction(actions, conv) < 0.5  # uniform data: |x| > 0.65 about 35%
    assert ActionConventions.from_dict(conv.to_dict()) == conv and conv.steps == STEPS


def test_chunk_pads_by_repeating_the_last_action_of_the_episode():
    values = np.arange(10.0)[:, None]
    np.testing.assert_array_equal(chunk_window(values, 2, 6, 4, 4)[:, 0], [4, 5, 5, 5])
    np.testing.assert_array_equal(chunk_window(values, 2, 6, 2, 3)[:, 0], [2, 3, 4])
    with pytest.raises(IndexError):
        chunk_window(values, 2, 6, 6, 3)


# ---- the adapter on every family ----------------------------------------------------------------
@pytest.mark.parametrize("family", supported_families())
def test_adapter_runs_on_every_family(family):
    adapter = tiny_adapter(family)
    assert float(adapter.query.detach().abs().max()) == 0  # zero-initialised ActionQuery
    inputs = adapter.encode(images(), TEXTS)
    assert ((inputs["input_ids"] == adapter.query_id).sum(1) == 1).all()
    arm, grip = adapter(inputs)
    assert arm.shape == (2, 4, 3) and grip.shape == (2, 4)
    (arm.sum() + grip.sum()).backward()
    assert adapter.query.grad is not None and float(adapter.query.grad.abs().sum()) > 0
    with torch.no_grad():  # the query really enters the sequence: changing it changes the actions
        adapter.query.add_(1.0)
        assert not torch.allclose(adapter(inputs)[0], arm)
    share = adapter.new_parameters()
    assert share["new_parameters"] == 32 + sum(p.numel() for p in adapter.head.parameters())


def test_query_state_ignores_padding_side():
    adapter = tiny_adapter().eval()
    inputs = adapter.encode(images(), TEXTS)
    with torch.no_grad():
        alone = adapter(adapter.encode(images()[:1], TEXTS[:1]))[0]
        batched = adapter(inputs)[0][:1]
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=1e-4)


# ---- freezing -----------------------------------------------------------------------------------
def _grads_after_one_step(family: str, preset: str):
    # in training mode, as the training loop runs it (init_state): the MobileNetV2 tower's BatchNorm then
    # normalises with batch statistics; in eval mode its running statistics of a random init let the
    # activations, and so the gradients, shrink through the tower to ~1e-19
    texts, pixels, adapter = TEXTS, images(), tiny_adapter(family).train()
    apply_freezing(adapter, preset)
    before = {n: p.detach().clone() for n, p in adapter.named_parameters()}
    opt = torch.optim.AdamW([p for p in adapter.parameters() if p.requires_grad], lr=1e-2, weight_decay=0)
    arm, grip = adapter(adapter.encode(pixels, texts))
    (arm.square().sum() + grip.sum()).backward()
    opt.step()
    graded = {n for n, p in adapter.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    changed = {n for n, p in adapter.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in adapter.named_parameters() if p.requires_grad}
    return adapter, graded, changed, trainable


@pytest.mark.parametrize("family", supported_families())
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_gradients_reach_exactly_the_unfrozen_modules(family, preset):
    _, used, _, _ = _grads_after_one_step(family, "full")  # parameters in the action forward
    adapter, graded, changed, trainable = _grads_after_one_step(family, preset)
    assert graded == trainable & used  # a gradient on every trainable parameter the forward uses, on no frozen one
    assert changed == graded  # the step moved every one of them, and no frozen one
    frozen = freeze_preset(preset).frozen_groups()
    groups = {group_of(adapter, n) for n in graded}
    assert "new" in groups and not groups & frozen
    expected = {"vision", "projector", "word_embeddings", "language_model", "new"} - frozen
    assert expected <= groups, f"{preset}: no gradient reached {expected - groups}"


def test_freezing_table_counts_and_unknown_preset():
    adapter = tiny_adapter()
    table = apply_freezing(adapter, "freeze_vision")
    assert table.loc["vision", "trainable"] == 0 and table.loc["vision", "frozen"] > 0
    assert table.loc["new", "frozen"] == 0
    assert table.loc["total"].frozen + table.loc["total"].trainable == sum(p.numel() for p in adapter.parameters())
    with pytest.raises(ValueError, match="nearest.*freeze_vision"):
        freeze_preset("freeze_visoin")


# ---- training signal and the policy -------------------------------------------------------------
def test_tiny_adapter_overfits_one_batch():
    torch.manual_seed(0)
    adapter = tiny_adapter()
    inputs = adapter.encode(images(4), TEXTS * 2)
    target = torch.rand(4, 4, 3) * 1.6 - 0.8
    grip = (torch.rand(4, 4) > 0.5).float()
    opt = torch.optim.AdamW(adapter.parameters(), lr=3e-3, weight_decay=0)
    losses = []
    for _ in range(150):
        terms = action_loss(*adapter(inputs), target, grip, TINY_HEAD)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        losses.append(float(terms["loss"].detach()))
    assert losses[-1] < losses[0] / 10, losses[::15]


def test_policy_acts_in_env_space_and_round_trips_through_save_load(tmp_path):
    adapter = tiny_adapter("idefics3")
    torch.nn.init.normal_(adapter.query)  # make the saved query non-trivial
    conv = ActionConventions(q01=(-0.5, -1.0, -1.0), q99=(0.5, 1.0, 1.0))
    policy = VLAPolicy(adapter, conv)
    batch = {OBS_IMAGE: images(3, 48), INSTRUCTION: ["open the drawer", "reach the goal", "push the puck"]}
    actions = policy.act(batch)
    assert actions.shape == (3, policy.chunk_size, 4) and actions.dtype == np.float32
    assert set(np.unique(actions[..., 3])) <= {-1.0, 1.0}
    assert np.abs(actions[..., 0]).max() <= 0.5 * 0.65 + 1e-6  # inverse of clip_rescale and q01/q99
    loaded = load_policy(save_policy(policy, tmp_path / "policy"))
    np.testing.assert_array_equal(loaded.act(batch), actions)
    assert loaded.conventions == conv and loaded.adapter.head_cfg == TINY_HEAD


def test_full_size_architectures_construct_on_the_meta_device():
    """The GPU benchmark's published configs: parameter counts of the real models."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_adapter.py"
    spec = importlib.util.spec_from_file_location("bench_adapter", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    qwen = bench.full_size_backbone("qwen2_5_vl_3b", device="meta")
    assert 3.70e9 < qwen.n_parameters() < 3.80e9 and qwen.hidden_size == 2048  # Qwen2.5-VL-3B: 3.75B
    assert qwen.n_image_tokens == 64  # 224 px, patch 14, 2x2 merge
    gemma = bench.full_size_backbone("paligemma_3b", device="meta")
    assert 2.85e9 < gemma.n_parameters() < 3.0e9 and gemma.n_image_tokens == 256  # PaliGemma-3B: 2.9B
