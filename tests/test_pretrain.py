"""Pretraining, the zoo and the general VQA probe on tiny models."""

from __future__ import annotations

import json

import pytest
import torch

from vlm4vla.backbones.base import BackboneConfig, load_backbone, make_backbone
from vlm4vla.backbones.pretrain import PretrainConfig, pretrain, recipe_items, sample_batch
from vlm4vla.backbones.zoo import ZOOS, build_zoo_member, get_zoo, scratch_twin, twin_gaps, zoo_table
from vlm4vla.data.corpus import CorpusConfig, make_corpus
from vlm4vla.probes import general_vqa_accuracy

TINY = BackboneConfig(family="qwen2_vl", hidden_size=64, text_layers=2, vision_layers=2, heads=2, vocab_size=400, image_size=32)
CORPUS = make_corpus(CorpusConfig(n_train=64, n_heldout=16, image_size=32))
FAST = PretrainConfig(steps=30, batch_size=8, lr=3e-3, warmup_steps=5, log_every=5, progress=False)


def test_pretraining_reduces_the_loss() -> None:
    backbone = make_backbone(TINY, CORPUS.train.texts())
    history = pretrain(backbone, CORPUS.train, FAST)
    assert len(history) == 6 and history[-1]["step"] == 30
    assert history[-1]["loss"] < 0.6 * history[0]["loss"]
    assert "30 steps" in backbone.card["pretraining"]


def test_pretraining_is_deterministic_per_seed() -> None:
    cfg = PretrainConfig(steps=4, batch_size=4, log_every=2, progress=False)
    runs = [pretrain(make_backbone(TINY, CORPUS.train.texts()), CORPUS.train, cfg) for _ in range(2)]
    assert [h["loss"] for h in runs[0]] == [h["loss"] for h in runs[1]]


def test_curriculum_draws_single_object_scenes_first(monkeypatch) -> None:
    import vlm4vla.backbones.pretrain as module
    seen: list[set] = []
    def spy(corpus, items, rng, batch_size):
        seen.append(set(items["n_objects"]))
        return sample_batch(corpus, items, rng, batch_size)
    monkeypatch.setattr(module, "sample_batch", spy)
    pretrain(make_backbone(TINY, CORPUS.train.texts()), CORPUS.train,
             PretrainConfig(steps=4, batch_size=2, curriculum_steps=2, progress=False))
    assert seen[0] == seen[1] == {1} and seen[3] == set(recipe_items(CORPUS.train, "qa+captions")["n_objects"])
    with pytest.raises(ValueError, match="curriculum_steps=-1"):
        PretrainConfig(curriculum_steps=-1)


def test_captions_few_qa_keeps_every_caption_and_a_tenth_of_the_questions() -> None:
    items = recipe_items(CORPUS.train, "captions+few-qa")
    kinds = CORPUS.train.items["kind"].value_counts()
    assert (items["kind"] == "caption").sum() == kinds["caption"]
    assert (items["kind"] == "qa").sum() == round(0.1 * kinds["qa"])
    assert recipe_items(CORPUS.train, "qa+captions").equals(CORPUS.train.items)  # unchanged for full recipes


def test_recipe_errors_name_the_allowed() -> None:
    with pytest.raises(ValueError, match="qa\\+captions"):
        PretrainConfig(recipe="qa+caption")


def test_general_vqa_accuracy_has_intervals() -> None:
    result = general_vqa_accuracy(make_backbone(TINY, CORPUS.train.texts()), CORPUS.heldout, n=12)
    overall = result["overall"]
    eps = 1e-9  # wilson_interval may be off by float round-off at 0/n
    assert overall["n"] == 12 and 0 <= overall["ci_low"] <= overall["accuracy"] + eps <= overall["ci_high"] + 2 * eps <= 1 + 2 * eps
    assert sum(s["n"] for s in result["by_type"].values()) == 12
    assert len(result["answers"]) == 12 and "predicted" in result["answers"]


def test_zoo_presets() -> None:
    default = get_zoo("default")
    assert len(default) >= 6 and len({s.backbone.family for s in default}) >= 4
    assert any(s.scratch for s in default) and len(get_zoo("smoke")) == 2
    twin = scratch_twin(default[0])
    assert twin.backbone == default[0].backbone and twin.scratch
    with pytest.raises(ValueError, match="smoke"):
        get_zoo("smok")


def test_build_zoo_member_writes_a_loadable_checkpoint(tmp_path) -> None:
    spec = ZOOS["smoke"][0]
    spec = type(spec)(spec.name, TINY, PretrainConfig(steps=3, batch_size=4, progress=False))
    summary = build_zoo_member(spec, CORPUS, tmp_path, n_probe=8)
    folder = tmp_path / spec.name
    assert summary["build_seconds"] > 0
    assert json.loads((folder / "summary.json").read_text()) == {k: v for k, v in summary.items() if k != "build_seconds"}
    assert (folder / "history.csv").read_text().startswith("step,loss,lr\n")
    # a rebuild from the same seed gives the same bytes (every policy run depends on this folder in DVC)
    build_zoo_member(spec, CORPUS, tmp_path / "again", n_probe=8)
    files = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "again" / spec.name) for p in (tmp_path / "again" / spec.name).rglob("*") if p.is_file())
    assert [f for f in files if (folder / f).read_bytes() != (tmp_path / "again" / spec.name / f).read_bytes()] == []
    assert "general_vqa" in (folder / "README.md").read_text()
    assert load_backbone(folder).n_parameters() == summary["params"]
    table = zoo_table(tmp_path)
    assert table["name"].tolist() == [spec.name]
    assert 0 <= summary["twin_vqa_accuracy"] <= 1 and summary["twin_vqa_n"] == 8  # the random-init twin's probe
    gaps = twin_gaps(table)
    assert gaps.loc[spec.name, "gap"] == summary["vqa_accuracy"] - summary["twin_vqa_accuracy"]


def test_every_default_member_is_pretrained_with_a_curriculum_or_a_scratch_twin() -> None:
    for spec in get_zoo("default"):
        assert spec.scratch or 0 < spec.pretrain.curriculum_steps <= spec.pretrain.steps
