"""FAST action tokenizer and stage-1 control supervision (finding 4): round trips, malformed
decoding, the control + VQA mix, loss reduction, declarative freezing and the saved backbone."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.fft import dct

from vlm4vla.backbones.base import BackboneConfig, load_backbone, make_backbone
from vlm4vla.backbones.control_supervision import (CONTROL_QTYPE, ControlConfig, add_fast_tokens, control_items,
                                                   finetune_control, fit_fast, item_losses, mixed_corpus, run_stage1)
from vlm4vla.data.corpus import Corpus, CorpusConfig, make_corpus
from vlm4vla.data.demos import DemoConfig, DemoStore, generate_demonstrations
from vlm4vla.data.fast import FastConfig, FastTokenizer, action_chunks, quantise, round_trip_errors
from vlm4vla.envs import make_suite_config

torch.set_num_threads(1)
FAST = FastConfig(scale=10.0, vocab_size=128, chunk_size=4, action_dim=4)
TINY = BackboneConfig(hidden_size=64, text_layers=2, vision_layers=2, heads=2, vocab_size=512)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    """Real expert chunks: the smoke suite, one episode per task (about 10 s)."""
    cfg = DemoConfig(episodes_per_task=1, seed=0, workers=0)
    path = generate_demonstrations(make_suite_config("smoke", max_episode_steps=120), cfg, tmp_path_factory.mktemp("d") / "s")
    return DemoStore.open(path)


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(CorpusConfig(n_train=40, n_heldout=16, seed=0))


def _random_chunks(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, FAST.chunk_size, FAST.action_dim))


def test_quantised_coefficients_are_within_half_a_step() -> None:
    for chunk in _random_chunks(50):
        exact = dct(chunk, type=2, norm="ortho", axis=0).reshape(-1) * FAST.scale
        assert np.abs(quantise(chunk, FAST) - exact).max() <= 0.5 + 1e-9


def test_flattening_is_frequency_major_with_dimensions_interleaved() -> None:
    chunk = np.zeros((4, 4))
    chunk[:, 2] = 0.5  # a constant dim 2: only its DC coefficient, at flat position 0 * A + 2
    q = quantise(chunk, FAST)
    assert q[2] == round(0.5 * 2 * FAST.scale) and np.count_nonzero(q) == 1


def test_round_trip_on_random_chunks_within_quantisation_error() -> None:
    fast = FastTokenizer.fit(_random_chunks(400, seed=1), FAST)
    errors = round_trip_errors(fast, _random_chunks(300, seed=2))
    assert errors["max_abs_error"] <= FAST.max_abs_error + 1e-9  # sqrt(N) * 0.5 / scale = 0.1
    assert errors["rms_error"] <= 0.5 / FAST.scale / np.sqrt(3) * 1.2  # uniform rounding: step / sqrt(12)


def test_round_trip_on_real_chunks_and_bpe_compresses_them(store: DemoStore) -> None:
    chunks = action_chunks(store, FAST.chunk_size)
    assert chunks.shape == (len(store), 4, 4)
    ep = store.episodes.iloc[0]  # the last chunk of an episode repeats its last action
    last = ep.start + ep.length - 1
    assert np.array_equal(chunks[last], np.repeat(store.actions[last][None], 4, axis=0))
    fast = FastTokenizer.fit(chunks, FAST)
    errors = round_trip_errors(fast, chunks)
    assert errors["max_abs_error"] <= FAST.max_abs_error + 1e-9
    assert errors["compression"] > 2  # smooth expert chunks: far fewer tokens than 16 coefficients


def test_save_load_gives_the_same_tokens(tmp_path: Path) -> None:
    fast = FastTokenizer.fit(_random_chunks(200), FAST)
    again = FastTokenizer.load(fast.save(tmp_path / "fast"))
    chunks = _random_chunks(20, seed=5)
    assert [fast.encode(c) for c in chunks] == [again.encode(c) for c in chunks]
    assert again.cfg == fast.cfg and sorted(p.name for p in (tmp_path / "fast").iterdir()) == ["fast.json", "fast_tokenizer.json"]


@pytest.mark.parametrize("ids", [[], [10**6, -3], list(range(200)), [0], "text"])
def test_decoding_malformed_sequences_pads_or_truncates_with_a_warning(ids) -> None:
    fast = FastTokenizer.fit(_random_chunks(200), FAST)
    ids = fast.encode(_random_chunks(1)[0]) + [fast.vocab_size + 5] if ids == "text" else ids
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chunk = fast.decode(ids)
    assert chunk.shape == (4, 4) and np.isfinite(chunk).all() and np.abs(chunk).max() <= 1.0
    assert len(caught) == 1 and "malformed" in str(caught[0].message)
    assert not fast.decode_checked(ids)[1].well_formed


def test_text_spelling_round_trip() -> None:
    fast = FastTokenizer.fit(_random_chunks(200), FAST)
    chunk = _random_chunks(1, seed=9)[0]
    text = fast.encode_text(chunk)
    assert text.startswith("<fast_") and np.abs(fast.decode_text(" junk " + text) - chunk).max() <= FAST.max_abs_error


@pytest.mark.parametrize("field,value", [("scale", 0.0), ("vocab_size", 10), ("chunk_size", 0)])
def test_invalid_fast_config_names_the_field(field: str, value) -> None:
    with pytest.raises(ValueError, match=f"FastConfig.{field}={value!r}"):
        FastConfig(**{field: value})


def test_invalid_control_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="ControlConfig.freeze='vision'.*allowed"):
        ControlConfig(freeze="vision")
    with pytest.raises(ValueError, match="ControlConfig.vqa_ratio=1.0"):
        ControlConfig(vqa_ratio=1.0)


def test_out_of_bound_chunks_are_refused() -> None:
    with pytest.raises(ValueError, match="action_bound"):
        quantise(np.full((4, 4), 1.5), FAST)


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.8])
def test_mixed_corpus_holds_the_vqa_share(store: DemoStore, corpus, ratio: float) -> None:
    fast = fit_fast(store, FAST)
    mix = mixed_corpus(store, corpus.train, fast, ratio)
    share = float(np.mean(mix.items["qtype"] != CONTROL_QTYPE))
    assert abs(share - ratio) < 0.01
    row = mix.items[mix.items["qtype"] == CONTROL_QTYPE].iloc[0]  # control items: frame + action prompt + FAST
    assert row["prompt"].startswith("What action should the robotic arm take to") and row["answer"].startswith("<fast_")
    assert np.array_equal(mix.images[row["image"]], store.frames[row["image"]])
    general = mix.items[mix.items["qtype"] != CONTROL_QTYPE]
    if len(general):
        first = general.iloc[0]
        assert np.array_equal(mix.images[first["image"]], corpus.train.images[first["image"] - len(store)])


def test_fast_token_rows_do_not_depend_on_the_global_random_state(store, corpus) -> None:
    """The same backbone gets the same new FAST rows whatever ran before (stage 1 must rebuild bit for bit),
    and adding them leaves the caller's random stream where it was."""
    fast = fit_fast(store, FAST)
    rows = []
    for burn in (0, 1000):
        torch.manual_seed(1)
        backbone = make_backbone(TINY, corpus.train.texts())
        torch.rand(burn)
        state = torch.get_rng_state()
        ids = add_fast_tokens(backbone, fast)
        assert torch.equal(torch.get_rng_state(), state)
        rows.append(backbone.model.get_input_embeddings().weight[ids].detach().clone())
    assert rows[0].abs().sum() > 0 and torch.equal(rows[0], rows[1])


@pytest.fixture(scope="module")
def trained(store: DemoStore, corpus):
    """A tiny random backbone before / after 40 stage-1 steps with the vision encoder frozen."""
    backbone = make_backbone(TINY, corpus.train.texts())
    fast = fit_fast(store, FAST)
    add_fast_tokens(backbone, fast)
    control = Corpus(store.frames, control_items(store, fast))
    before = {n: p.detach().clone() for n, p in backbone.model.named_parameters()}
    loss_before = item_losses(backbone, control, (CONTROL_QTYPE,), n=32)
    cfg = ControlConfig(steps=40, batch_size=8, lr=3e-3, freeze="freeze_vision", progress=False, fast=FAST)
    history = finetune_control(backbone, store, corpus.train, cfg, fast)
    return backbone, before, loss_before, item_losses(backbone, control, (CONTROL_QTYPE,), n=32), history


def test_stage1_reduces_the_action_token_loss(trained) -> None:
    _, _, loss_before, loss_after, history = trained
    assert loss_after < 0.7 * loss_before
    assert history[-1]["loss"] < history[0]["loss"] and len(history) == 4


def test_freeze_vision_keeps_vision_bit_identical_and_trains_the_rest(trained) -> None:
    backbone, before, *_ = trained
    changed = {backbone.groups.group_of(n) or "other": False for n in before}
    for name, p in backbone.model.named_parameters():
        group = backbone.groups.group_of(name) or "other"
        if group == "vision":
            assert torch.equal(p, before[name]), name
        changed[group] |= not torch.equal(p, before[name])
    assert changed["projector"] and changed["language_model"] and changed["word_embeddings"]
    assert all(p.requires_grad for p in backbone.model.parameters())  # freezing undone after stage 1


def test_stage1_without_freezing_trains_vision(store: DemoStore, corpus) -> None:
    backbone = make_backbone(TINY, corpus.train.texts())
    vision = {n: p.detach().clone() for n, p in backbone.model.named_parameters() if backbone.groups.group_of(n) == "vision"}
    finetune_control(backbone, store, corpus.train, ControlConfig(steps=2, batch_size=4, freeze="none", progress=False, fast=FAST))
    assert any(not torch.equal(p, vision[n]) for n, p in backbone.model.named_parameters() if n in vision)


def test_run_stage1_saves_a_loadable_backbone_with_its_fast_tokenizer(store: DemoStore, corpus, tmp_path: Path) -> None:
    base = make_backbone(TINY, corpus.train.texts()).save(tmp_path / "zoo" / "tiny")
    fast = fit_fast(store, FAST)
    cfg = ControlConfig(steps=3, batch_size=4, progress=False, fast=FAST)
    summary = run_stage1(base, store, corpus.train, corpus.heldout, cfg, fast, tmp_path / "out", n_probe=8)
    saved = tmp_path / "out" / "tiny-fast-freeze_vision"
    assert summary["name"] == saved.name and {"control_loss_before", "vqa_accuracy_after"} <= set(summary)
    backbone = load_backbone(saved)
    assert all(t in backbone.tokenizer.get_vocab() for t in fast.special_tokens())
    assert FastTokenizer.load(saved).encode(action_chunks(store, 4)[0]) == fast.encode(action_chunks(store, 4)[0])
    assert "control_supervision" in backbone.card and (saved / "history.csv").is_file()


def test_text_only_loss_has_known_answers() -> None:
    from vlm4vla.analysis.vision import text_only_loss

    assert text_only_loss([[1, 2], [1, 2]]) == 0.0  # one sequence, always: nothing to learn
    # position 0 is 1 or 2, half each (log 2 nats); the end token is certain: 2 log 2 over 4 tokens
    assert text_only_loss([[1], [2]]) == pytest.approx(np.log(2) / 2)
    assert text_only_loss([[1], [2]], groups=["a", "b"]) == 0.0  # the prompt tells them apart


def test_stage1_image_dependence_compares_own_and_shuffled_images(store: DemoStore, corpus, tmp_path: Path) -> None:
    import dataclasses

    from vlm4vla.analysis.vision import stage1_image_dependence, text_only_loss

    base = make_backbone(TINY, corpus.train.texts()).save(tmp_path / "zoo" / "tiny")
    fast = fit_fast(store, FAST)
    summary = run_stage1(base, store, corpus.train, corpus.heldout, ControlConfig(steps=3, batch_size=4, progress=False,
                                                                                   fast=FAST), fast, tmp_path / "out", n_probe=8)
    saved = tmp_path / "out" / summary["name"]
    table = stage1_image_dependence([saved], store, n=16)
    row = table.loc[summary["name"]]
    assert row["loss_before_stage1"] == summary["control_loss_before"]
    assert row["image_gain"] == pytest.approx(row["loss_shuffled_image"] - row["loss_own_image"])
    assert row["text_only_reference"] == pytest.approx(
        text_only_loss([fast.encode(c) for c in action_chunks(store, 4)], list(store.table["instruction"])))
    blank = dataclasses.replace(store, frames=np.zeros_like(store.frames))  # one image for all: shuffling changes nothing
    assert stage1_image_dependence([saved], blank, n=16).loc[summary["name"], "image_gain"] == 0.0
    empty = stage1_image_dependence([], store)  # no stage-1 backbone here: an empty table, same columns
    assert empty.empty and list(empty.columns) == list(table.columns) and empty.index.name == "backbone"
    # kept in git: measured here once, then read back on a machine without the backbone
    kept = tmp_path / "kept"
    here = stage1_image_dependence([saved], store, n=16, kept_in=kept)
    assert bool(here.loc[summary["name"], "measured_here"]) and (kept / f"{summary['name']}.json").is_file()
    elsewhere = stage1_image_dependence([tmp_path / "gone" / summary["name"]], store, n=16, kept_in=kept)
    assert not elsewhere.loc[summary["name"], "measured_here"]
    pd.testing.assert_frame_equal(elsewhere.drop(columns="measured_here"), here.drop(columns="measured_here"))
    assert stage1_image_dependence([tmp_path / "gone" / summary["name"]], store, n=8, kept_in=kept).empty  # other n
