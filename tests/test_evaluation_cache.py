"""A run's closed-loop results are reused only for the same weights, suite and evaluation config."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import vlm4vla.train.evaluation as evaluation
from vlm4vla.envs import make_suite_config
from vlm4vla.evaluate import EvalConfig
from vlm4vla.train.evaluation import cached_evaluate, policy_fingerprint


@pytest.fixture
def fake_policy(tmp_path, monkeypatch):
    """A policy folder (weights + policy.json) and an ``evaluate`` that counts its calls."""
    policy = tmp_path / "policy"
    (policy / "backbone").mkdir(parents=True)
    (policy / "backbone" / "model.safetensors").write_bytes(b"backbone weights")
    (policy / "adapter.safetensors").write_bytes(b"adapter weights")
    (policy / "policy.json").write_text("{}")
    calls = []

    def fake_evaluate(loaded, suite_cfg, eval_cfg, callbacks=()):
        calls.append(eval_cfg)
        return {"mean_success": 0.5 + 0.1 * len(calls), "eval": {"execute_k": eval_cfg.execute_k}, "pair": (1, 2)}

    monkeypatch.setattr(evaluation, "load_policy", lambda path: path)
    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    return policy, calls


def test_same_policy_and_configs_reuse_the_stored_result(fake_policy, tmp_path):
    policy, calls = fake_policy
    suite, cfg, cache = make_suite_config("smoke"), EvalConfig(execute_k=1), tmp_path / "evals" / "k1.json"
    first, reused_first = cached_evaluate(policy, suite, cfg, cache)
    again, reused_again = cached_evaluate(policy, suite, cfg, cache)
    assert (reused_first, reused_again) == (False, True)
    assert len(calls) == 1
    assert again == first == {"mean_success": 0.6, "eval": {"execute_k": 1}, "pair": [1, 2]}  # same types both ways


@pytest.mark.parametrize("change", ["weights", "eval", "suite", "corrupt"])
def test_any_change_evaluates_afresh_and_replaces_the_stored_result(fake_policy, tmp_path, change):
    policy, calls = fake_policy
    suite, cfg, cache = make_suite_config("smoke"), EvalConfig(execute_k=1), tmp_path / "k1.json"
    cached_evaluate(policy, suite, cfg, cache)
    if change == "weights":
        (policy / "adapter.safetensors").write_bytes(b"other adapter weights")
    elif change == "eval":
        cfg = replace(cfg, seed=cfg.seed + 1)
    elif change == "suite":
        suite = replace(suite, image_size=suite.image_size * 2)
    else:
        cache.write_text('{"key": ')
    result, reused = cached_evaluate(policy, suite, cfg, cache)
    assert not reused and len(calls) == 2 and result["mean_success"] == pytest.approx(0.7)
    assert json.loads(cache.read_text())["result"]["mean_success"] == pytest.approx(0.7)
    assert cached_evaluate(policy, suite, cfg, cache)[1]  # the replacement is reused in turn


def test_fingerprint_covers_weights_and_names_not_other_files(tmp_path):
    policy = tmp_path / "p"
    policy.mkdir()
    (policy / "a.safetensors").write_bytes(b"x")
    (policy / "policy.json").write_text("{}")
    before = policy_fingerprint(policy)
    (policy / "README.txt").write_text("notes")
    assert policy_fingerprint(policy) == before
    (policy / "a.safetensors").rename(policy / "b.safetensors")
    assert policy_fingerprint(policy) != before
    with pytest.raises(FileNotFoundError, match="no policy weights"):
        policy_fingerprint(tmp_path / "empty")


def test_benchmark_configs_build_either_benchmark_and_name_a_bad_one():
    from vlm4vla.envs.libero_eval import LiberoEvalConfig, LiberoSuite
    from vlm4vla.train.evaluation import benchmark_configs

    evaluation = {"episodes_per_task": 3, "seed": 7, "execute_k": [2, 1], "checkpoints": [10]}
    suite, cfg = benchmark_configs({"preset": "smoke", "image_size": 32}, evaluation)
    assert suite.image_size == 32 and cfg == EvalConfig(episodes_per_task=3, seed=7, execute_k=2)
    suite, cfg = benchmark_configs({"benchmark": "libero", "preset": "libero_10", "tasks": [0, 9]},
                                   {**evaluation, "init_states": [0, 50]})
    assert suite == LiberoSuite(suite="libero_10", tasks=(0, 9)) and suite.as_dict()["benchmark"] == "libero"
    assert cfg == LiberoEvalConfig(episodes_per_task=3, seed=7, execute_k=2, init_states=(0, 50))
    with pytest.raises(ValueError, match=r"suite.benchmark='calvin': allowed is one of \('metaworld', 'libero'\)"):
        benchmark_configs({"benchmark": "calvin", "preset": "x"}, evaluation)


def test_a_running_evaluation_counts_its_episodes_in_a_file_removed_at_the_end(fake_policy, tmp_path, monkeypatch):
    policy, _ = fake_policy
    suite, cfg, cache = make_suite_config("smoke"), EvalConfig(execute_k=1, episodes_per_task=3), tmp_path / "k1.json"
    seen = []

    def counting_evaluate(loaded, suite_cfg, eval_cfg, callbacks=()):
        for _ in range(2):
            for cb in callbacks:
                cb.on_episode_end(None, {"success": False})
        seen.append(json.loads(evaluation.progress_path(cache).read_text()))
        return {"mean_success": 0.0}

    monkeypatch.setattr(evaluation, "evaluate", counting_evaluate)
    cached_evaluate(policy, suite, cfg, cache)
    assert seen == [{"done": 2, "total": 3 * len(suite.tasks)}]
    assert not evaluation.progress_path(cache).exists() and cache.is_file()
