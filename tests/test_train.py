"""The one training loop: data stream, config parsing, train -> checkpoint -> resume -> policy.

A tiny in-test demonstration store (the DemoStore reader interface: frames, actions, table,
episodes) and the "scratch:qwen2_vl:test" backbone keep every test to a few seconds on CPU.
"""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import vlm4vla.train.loop as loop_module
from vlm4vla.adapter import load_policy
from vlm4vla.adapter.actions import fit_conventions
from vlm4vla.constants import INSTRUCTION, OBS_IMAGE
from vlm4vla.data.chunks import ARM_TARGET, GRIPPER_TARGET, ChunkDataset, DataConfig, StepSampler
from vlm4vla.envs.instructions import instructions_for
from vlm4vla.train import (RunConfig, TrainingDiverged, discard_foreign_run, lr_at, make_run_config, train,
                           train_to_milestone)
from vlm4vla.train.step import check_finite

TASKS = ("drawer-close-v3", "button-press-topdown-v3", "reach-v3")
TINY = {"backbone": "scratch:qwen2_vl:test", "steps": 6, "batch_size": 4, "warmup_steps": 2,
        "checkpoint_every": 2, "width": 32, "branch": [32, 16], "lr": 1e-3}


def fake_store(n_episodes: int = 3, length: int = 6, size: int = 32, seed: int = 0) -> SimpleNamespace:
    """A DemoStore-shaped object: frames (F,H,W,3) uint8, actions (F,4), per-frame table, episodes."""
    rng = np.random.default_rng(seed)
    n = n_episodes * length
    tasks = np.repeat([TASKS[i % len(TASKS)] for i in range(n_episodes)], length)
    table = pd.DataFrame({"episode_index": np.repeat(np.arange(n_episodes), length),
                          "frame_index": np.tile(np.arange(length), n_episodes), "task": tasks,
                          "instruction": [instructions_for(t)[0] for t in tasks]})
    actions = np.concatenate([rng.uniform(-1, 1, (n, 3)), rng.choice([-1.0, 1.0], (n, 1))], 1)
    return SimpleNamespace(frames=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                           actions=actions.astype(np.float32), table=table,
                           episodes=pd.DataFrame({"start": np.arange(n_episodes) * length, "length": length}))


# ---- configs ------------------------------------------------------------------------------------
def test_run_config_from_flat_params_and_round_trip():
    cfg = make_run_config({**TINY, "chunk": 5, "freeze": "freeze_vision", "shift_pixels": 2})
    assert cfg.head.chunk_size == 5 and cfg.train.steps == 6 and cfg.data.shift_pixels == 2
    assert cfg.head.branch == (32, 16) and cfg.freeze == "freeze_vision"
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="nearest.*batch_size"):
        make_run_config({"batch_sise": 3})
    with pytest.raises(ValueError, match="freeze='frozen_vision'.*nearest"):
        make_run_config({"freeze": "frozen_vision"})
    with pytest.raises(ValueError, match="scratch:<family>:<size>"):
        make_run_config({"backbone": "scratch:qwen2_vl:huge"})


def test_lr_warms_up_linearly_then_stays_constant():
    cfg = make_run_config({"lr": 1.0, "warmup_steps": 3}).train
    assert [lr_at(s, cfg) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


# ---- data ---------------------------------------------------------------------------------------
def test_step_sampler_is_a_pure_function_of_the_step():
    full = list(StepSampler(10, 4, 8, seed=3))
    assert list(StepSampler(10, 4, 8, seed=3, start_step=5)) == full[5:]
    frames = [k[0] for batch in full[:5] for k in batch]  # 20 draws = two full epochs
    assert sorted(frames) == sorted(list(range(10)) * 2)
    ranks = [StepSampler(10, 2, 4, seed=3, rank=r, world=2).batch_keys(1) for r in (0, 1)]
    assert ranks[0] + ranks[1] == StepSampler(10, 4, 4, seed=3).batch_keys(1)


def test_chunk_dataset_is_deterministic_augments_and_pads_at_episode_end():
    store = fake_store()
    conv = fit_conventions(store.actions)
    ds = ChunkDataset(store, conv, 4, DataConfig(shift_pixels=4), seed=0)
    a, b = ds[(5, 11)], ds[(5, 11)]
    assert np.array_equal(a[OBS_IMAGE], b[OBS_IMAGE]) and a[INSTRUCTION] == b[INSTRUCTION]
    assert a[INSTRUCTION] in instructions_for(store.table.task[5], "train")
    assert any(not np.array_equal(ds[(5, d)][OBS_IMAGE], store.frames[5]) for d in range(5))
    arm, grip = conv.encode(store.actions)
    np.testing.assert_array_equal(a[ARM_TARGET], arm[[5, 5, 5, 5]])  # last frame of episode 0: repeated
    np.testing.assert_array_equal(ds[(6, 0)][GRIPPER_TARGET], grip[6:10])
    plain = ChunkDataset(store, conv, 4, DataConfig(shift_pixels=0, paraphrases=False), seed=0)[(5, 11)]
    assert np.array_equal(plain[OBS_IMAGE], store.frames[5]) and plain[INSTRUCTION] == store.table.instruction[5]


# ---- train, checkpoint, resume ------------------------------------------------------------------
def test_train_writes_history_checkpoints_and_a_loadable_policy(tmp_path):
    summary = train(make_run_config(TINY), tmp_path, store=fake_store(), progress=False)
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history.step) == [1, 2, 3, 4, 5, 6] and history.loss.notna().all()
    assert (tmp_path / "live" / "metrics.json").is_file()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000004", "step_00000006"]
    assert summary["steps"] == 6 and 0 < summary["new_share"]
    policy = load_policy(summary["policy_dir"])
    actions = policy.act({OBS_IMAGE: fake_store().frames[:2], INSTRUCTION: ["close the drawer"] * 2})
    assert actions.shape == (2, 4, 4)
    assert summary["freezing"].loc["total", "trainable"] > 0


def _weights(out_dir) -> dict[str, torch.Tensor]:
    return load_file(str(out_dir / "checkpoints" / "step_00000006" / "model.safetensors"))


def _weights_in(policy_dir) -> dict[str, torch.Tensor]:
    return load_file(str(next(policy_dir.glob("*.safetensors"))))


def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    cfg, store = make_run_config(TINY), fake_store()
    train(cfg, tmp_path / "straight", store=store, progress=False)
    real_step = loop_module.train_step

    def dies_at_step_5(state, batch):
        if state.step == 4:  # after the step-4 checkpoint, before step 5 is saved
            raise KeyboardInterrupt("simulated kill")
        return real_step(state, batch)

    monkeypatch.setattr(loop_module, "train_step", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "killed", store=store, progress=False)
    monkeypatch.setattr(loop_module, "train_step", real_step)
    torch.manual_seed(123)  # a resumed process starts from a different global RNG state
    summary = train(cfg, tmp_path / "killed", store=store, progress=False)
    assert summary["resumed_from"] == 4 and summary["steps_this_session"] == 2
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    a, b = (pd.read_csv(tmp_path / d / "history.csv") for d in ("straight", "killed"))
    assert a.drop(columns="seconds").equals(b.drop(columns="seconds"))
    live = [pd.read_csv(tmp_path / d / "live/plots/metrics/train/loss.tsv", sep="\t") for d in ("straight", "killed")]
    assert list(live[1].step) == [0, 1, 2, 3, 4, 5] and np.allclose(live[0].loss, live[1].loss)


def test_resume_refuses_a_different_run_config(tmp_path):
    train(make_run_config({**TINY, "steps": 2}), tmp_path, store=fake_store(), progress=False)
    summary = train(make_run_config({**TINY, "steps": 4}), tmp_path, store=fake_store(), progress=False)
    assert summary["resumed_from"] == 2  # extending a run is allowed
    with pytest.raises(ValueError, match="different run config"):
        train(make_run_config({**TINY, "steps": 6, "lr": 5e-4}), tmp_path, store=fake_store(), progress=False)


def test_milestone_then_final_equals_straight_and_the_snapshot_survives_a_rerun(tmp_path):
    cfg, store = make_run_config(TINY), fake_store()
    train(cfg, tmp_path / "straight", store=store, progress=False)
    snapshot = train_to_milestone(cfg, tmp_path / "split", 3, store=store, progress=False)
    early = _weights_in(snapshot)
    train(cfg, tmp_path / "split", store=store, progress=False)
    straight, split = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert all(torch.equal(straight[n], split[n]) for n in straight)
    final = _weights_in(tmp_path / "split" / "policy")
    assert early.keys() == final.keys()
    assert any(not torch.equal(early[n], final[n]) for n in early)  # the snapshot is the step-3 policy
    # a re-run notebook (the final run already done) gets the same step-3 policy back, not the final one
    again = train_to_milestone(cfg, tmp_path / "split", 3, store=store, progress=False)
    assert again == snapshot and all(torch.equal(early[n], _weights_in(again)[n]) for n in early)


def test_a_foreign_run_is_discarded_the_same_run_kept(tmp_path):
    cfg = make_run_config({**TINY, "steps": 2})
    train(cfg, tmp_path, store=fake_store(), progress=False)
    assert not discard_foreign_run(tmp_path, make_run_config({**TINY, "steps": 4}).to_dict())  # an extension
    assert (tmp_path / "checkpoints").exists()
    assert discard_foreign_run(tmp_path, make_run_config({**TINY, "lr": 5e-4}).to_dict())
    assert list(tmp_path.iterdir()) == []
    assert not discard_foreign_run(tmp_path, cfg.to_dict())  # nothing left to discard


def test_divergence_stops_with_step_and_loss(tmp_path):
    cfg = make_run_config({**TINY, "max_loss": 1e-6})
    with pytest.raises(TrainingDiverged, match=r"step 0: loss = 0\.\d+"):
        train(cfg, tmp_path, store=fake_store(), progress=False)
    with pytest.raises(TrainingDiverged, match="step 7: grad_norm = nan"):
        check_finite("grad_norm", torch.tensor(float("nan")), 7, float("inf"))


def test_scratch_init_keeps_architecture_and_tokenizer_but_not_weights(tmp_path):
    from vlm4vla.train.config import BackboneSpec
    from vlm4vla.train.step import build_backbone

    saved = build_backbone(BackboneSpec("scratch:idefics3:test"), seed=0)
    saved.save(tmp_path / "bb")
    pretrained = build_backbone(BackboneSpec(str(tmp_path / "bb")), seed=1)
    scratch = build_backbone(BackboneSpec(str(tmp_path / "bb"), init="scratch"), seed=1)
    assert scratch.tokenizer.get_vocab() == pretrained.tokenizer.get_vocab()
    a, b = dict(pretrained.model.named_parameters()), dict(scratch.model.named_parameters())
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    weights = [k for k in a if k.endswith("weight") and a[k].dim() == 2]
    assert all(not torch.equal(a[k], b[k]) for k in weights)
    with pytest.raises(ValueError, match="init='random'"):
        BackboneSpec("x", init="random")


@pytest.mark.slow
def test_smoke_demonstrations_train_resume_evaluate(tmp_path):
    """Real DemoStore -> train (killed by a too-small step budget, then extended) -> evaluate."""
    from vlm4vla.data.demos import DemoConfig, generate_demonstrations
    from vlm4vla.envs import make_suite_config
    from vlm4vla.evaluate import EvalConfig, evaluate

    suite = make_suite_config(["drawer-close-v3"], image_size=32, max_episode_steps=120)
    store = generate_demonstrations(suite, DemoConfig(episodes_per_task=1, workers=0), tmp_path / "demos")
    cfg = make_run_config({**TINY, "steps": 2, "demos_dir": str(store)})
    train(cfg, tmp_path / "run", progress=False)
    summary = train(replace(cfg, train=replace(cfg.train, steps=3)), tmp_path / "run", progress=False)
    assert summary["resumed_from"] == 2 and summary["steps"] == 3
    policy = load_policy(summary["policy_dir"])
    result = evaluate(policy, suite, EvalConfig(episodes_per_task=1, execute_k=4, workers=0, max_steps=8))
    assert result["overall"]["n"] == 1 and 0.0 <= result["mean_success"] <= 1.0
