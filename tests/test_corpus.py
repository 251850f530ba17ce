"""The general corpus: deterministic per seed, answers right on hand-checked scenes, open format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vlm4vla.data.corpus import (COLOURS, QUESTION_TYPES, CorpusConfig, SceneObject, ask, caption, load_corpus,
                                 make_corpus, render_scene)

SMALL = CorpusConfig(n_train=40, n_heldout=10, seed=3)
# Hand-made scene: red circle top-left, blue square top-right, green triangle bottom-middle.
SCENE = [SceneObject("red", "circle", 0, 0, 10.0, 10.0, 6.0), SceneObject("blue", "square", 0, 2, 53.0, 10.0, 6.0),
         SceneObject("green", "triangle", 2, 1, 32.0, 53.0, 6.0)]


def test_deterministic_per_seed() -> None:
    a, b = make_corpus(SMALL), make_corpus(SMALL)
    assert np.array_equal(a.train.images, b.train.images)
    pd.testing.assert_frame_equal(a.train.items, b.train.items)
    c = make_corpus(CorpusConfig(n_train=40, n_heldout=10, seed=4))
    assert not np.array_equal(a.train.images, c.train.images)


def test_train_and_heldout_scenes_differ() -> None:
    splits = make_corpus(SMALL)
    train = {img.tobytes() for img in splits.train.images}
    assert not any(img.tobytes() in train for img in splits.heldout.images)


def test_rendered_colours_at_object_centres() -> None:
    image = render_scene(SCENE, 64)
    assert tuple(image[10, 10]) == COLOURS["red"] and tuple(image[10, 53]) == COLOURS["blue"]
    assert tuple(image[55, 32]) == COLOURS["green"]  # below the triangle's apex, inside it
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8


def test_hand_checked_answers() -> None:
    rng = np.random.default_rng(0)
    assert caption(SCENE) == "a red circle, a blue square and a green triangle."
    for _ in range(20):
        question, answer = ask(SCENE, "colour", rng)
        assert answer == {"circle": "red", "square": "blue", "triangle": "green"}[question.split()[-1].rstrip("?")]
        question, answer = ask(SCENE, "count", rng)
        expected = "3" if "objects" in question else "1"
        assert answer == expected
        question, answer = ask(SCENE, "relation", rng)
        if question.startswith("Is the red circle left or right"):
            assert answer == "left"
        if question.startswith("Is the green triangle above or below") or "left or right of the green" in question:
            assert answer in {"below", "left", "right"}
        question, answer = ask(SCENE, "existence", rng)
        assert answer == ("yes" if question[11:-1] in {"red circle", "blue square", "green triangle"} else "no")


def test_every_question_type_and_short_answers() -> None:
    items = make_corpus(SMALL).train.items
    assert set(items["qtype"]) == {*QUESTION_TYPES, "caption"}
    qa = items[items["kind"] == "qa"]
    assert (qa["answer"].str.split().str.len() == 1).all()
    existence = qa[qa["qtype"] == "existence"]["answer"]
    assert 0.2 < (existence == "yes").mean() < 0.8


def test_save_and_load_open_format(tmp_path) -> None:
    splits = make_corpus(SMALL)
    splits.save(tmp_path)
    assert {p.name for p in (tmp_path / "train").iterdir()} == {"images.npy", "items.parquet"}
    loaded = load_corpus(tmp_path / "heldout")
    assert np.array_equal(loaded.images, splits.heldout.images)
    pd.testing.assert_frame_equal(loaded.items, splits.heldout.items)


def test_invalid_config_names_field() -> None:
    with pytest.raises(ValueError, match="n_train=0"):
        CorpusConfig(n_train=0)


def test_object_counts_follow_max_objects() -> None:
    items = make_corpus(CorpusConfig(n_train=60, n_heldout=5, max_objects=2)).train.items
    assert set(items["n_objects"]) == {1, 2}
    captions = items[items["kind"] == "caption"]
    assert ((captions["answer"].str.count(" a ") + 1) == captions["n_objects"]).all()  # 'a x, a y and a z.'
    with pytest.raises(ValueError, match="max_objects=10"):
        CorpusConfig(max_objects=10)
