"""The general-domain corpus: procedurally drawn scenes (CLEVR in spirit) with captions and VQA.

Each scene holds 1-4 shapes (circle / square / triangle) of distinct colour-shape pairs, one per cell
of a 3x3 grid (jittered), on a grey background. Question types (answers one word or a digit, so
accuracy is exact match): colour, shape, count, relation (left / right / above / below of another
object) and existence (yes / no, balanced). Train and held-out scenes come from disjoint random
streams of one seed. Saved in an open format: ``images.npy`` + ``items.parquet`` (no pickles).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 230),
           "yellow": (235, 215, 40), "purple": (150, 60, 200), "white": (245, 245, 245)}
SHAPES = ("circle", "square", "triangle")
QUESTION_TYPES = ("colour", "shape", "count", "relation", "existence")
CAPTION_PROMPT = "Describe the image."
BACKGROUND = (110, 110, 110)
GRID = 3  # objects sit in the cells of a GRID x GRID layout, so they never overlap


@dataclass(frozen=True)
class CorpusConfig:
    """Size and seed of the corpus (scenes per split, questions per scene, image size)."""

    n_train: int = 2000
    n_heldout: int = 300
    questions_per_image: int = 3
    image_size: int = 64
    max_objects: int = 4  # objects per scene are drawn uniformly from 1..max_objects
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_heldout", "questions_per_image", "max_objects"):
            if getattr(self, name) < 1:
                raise ValueError(f"CorpusConfig.{name}={getattr(self, name)!r} is invalid: must be >= 1")
        if self.image_size < 32:
            raise ValueError(f"CorpusConfig.image_size={self.image_size!r} is invalid: must be >= 32")
        if self.max_objects > GRID * GRID:
            raise ValueError(f"CorpusConfig.max_objects={self.max_objects!r} is invalid: must be <= {GRID * GRID} (grid cells)")


@dataclass(frozen=True)
class SceneObject:
    """One drawn object: colour and shape names, grid cell (row, col) and centre / radius in pixels."""

    colour: str
    shape: str
    row: int
    col: int
    x: float
    y: float
    radius: float

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class Corpus:
    """One split: images uint8 (N, H, W, 3) and items (one row per caption or question)."""

    images: np.ndarray
    items: pd.DataFrame  # columns: image, n_objects, kind ("caption" | "qa"), qtype, prompt, answer

    def __len__(self) -> int:
        return len(self.items)

    def save(self, path: str | Path) -> Path:
        """Write images.npy + items.parquet under ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "images.npy", self.images, allow_pickle=False)
        self.items.to_parquet(path / "items.parquet", index=False)
        return path

    def texts(self) -> list[str]:
        """All prompts and answers (for training a tokenizer)."""
        return sorted(set(self.items["prompt"]) | set(self.items["answer"]))


@dataclass
class CorpusSplits:
    """The train and held-out splits of one corpus."""

    train: Corpus
    heldout: Corpus
    config: CorpusConfig

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        self.train.save(path / "train")
        self.heldout.save(path / "heldout")
        return path


def load_corpus(path: str | Path) -> Corpus:
    """A split saved by ``Corpus.save``."""
    path = Path(path)
    return Corpus(np.load(path / "images.npy", allow_pickle=False), pd.read_parquet(path / "items.parquet"))


def make_corpus(cfg: CorpusConfig) -> CorpusSplits:
    """Train and held-out splits, deterministic for ``cfg.seed``."""
    train = make_split(cfg.n_train, cfg, np.random.default_rng([cfg.seed, 0]))
    heldout = make_split(cfg.n_heldout, cfg, np.random.default_rng([cfg.seed, 1]))
    return CorpusSplits(train, heldout, cfg)


def make_split(n: int, cfg: CorpusConfig, rng: np.random.Generator) -> Corpus:
    """``n`` scenes with a caption and ``questions_per_image`` questions each."""
    images, rows = [], []
    for i in range(n):
        scene = sample_scene(rng, cfg.image_size, cfg.max_objects)
        images.append(render_scene(scene, cfg.image_size))
        n = len(scene)  # lets pretraining start on single-object scenes (a curriculum)
        rows.append({"image": i, "n_objects": n, "kind": "caption", "qtype": "caption", "prompt": CAPTION_PROMPT,
                     "answer": caption(scene)})
        for qtype in rng.choice(QUESTION_TYPES, size=cfg.questions_per_image, replace=False):
            question, answer = ask(scene, str(qtype), rng)
            rows.append({"image": i, "n_objects": n, "kind": "qa", "qtype": str(qtype), "prompt": question, "answer": answer})
    return Corpus(np.stack(images), pd.DataFrame(rows))


def sample_scene(rng: np.random.Generator, size: int, max_objects: int = 4) -> list[SceneObject]:
    """1..max_objects objects with distinct (colour, shape) in distinct grid cells, row-major order."""
    n = int(rng.integers(1, max_objects + 1))
    cells = sorted(rng.choice(GRID * GRID, size=n, replace=False).tolist())
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    chosen = rng.choice(len(pairs), size=n, replace=False)
    cell = size / GRID
    objects = []
    for c, k in zip(cells, chosen):
        row, col = divmod(c, GRID)
        jitter = rng.uniform(-0.12, 0.12, size=2) * cell
        radius = float(rng.uniform(0.26, 0.34) * cell)
        x, y = (col + 0.5) * cell + jitter[0], (row + 0.5) * cell + jitter[1]
        objects.append(SceneObject(*pairs[k], row=row, col=col, x=float(x), y=float(y), radius=radius))
    return objects


def render_scene(objects: list[SceneObject], size: int) -> np.ndarray:
    """uint8 (size, size, 3) image of the objects on a grey background."""
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for o in objects:
        box = (o.x - o.radius, o.y - o.radius, o.x + o.radius, o.y + o.radius)
        fill = COLOURS[o.colour]
        if o.shape == "circle":
            draw.ellipse(box, fill=fill)
        elif o.shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(o.x, o.y - o.radius), (o.x - o.radius, o.y + o.radius), (o.x + o.radius, o.y + o.radius)], fill=fill)
    return np.asarray(image, dtype=np.uint8)


def caption(objects: list[SceneObject]) -> str:
    """'a red circle, a blue square and a green triangle.' (row-major order)."""
    names = [f"a {o.name}" for o in objects]
    return (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]) + "."


def ask(objects: list[SceneObject], qtype: str, rng: np.random.Generator) -> tuple[str, str]:
    """One (question, answer) of type ``qtype`` about the scene."""
    o = objects[int(rng.integers(len(objects)))]
    if qtype == "colour":
        same = [p for p in objects if p.shape == o.shape]
        where = "" if len(same) == 1 else f" at the {position_word(o)}"
        return f"What colour is the {o.shape}{where}?", o.colour
    if qtype == "shape":
        return f"What shape is the {o.colour} object?" if sum(p.colour == o.colour for p in objects) == 1 \
            else f"What shape is the {o.colour} object at the {position_word(o)}?", o.shape
    if qtype == "count":
        shape = str(rng.choice(SHAPES))
        if rng.random() < 0.5:
            return "How many objects are there?", str(len(objects))
        return f"How many {shape}s are there?", str(sum(p.shape == shape for p in objects))
    if qtype == "relation":
        return relation_question(objects, o, rng)
    if qtype == "existence":
        return existence_question(objects, rng)
    raise ValueError(f"qtype={qtype!r} is invalid: must be one of {QUESTION_TYPES}")


def position_word(o: SceneObject) -> str:
    """The grid cell as words, e.g. 'top left', 'middle', 'bottom right'."""
    rows, cols = ("top", "middle", "bottom"), ("left", "middle", "right")
    words = [w for w in (rows[o.row], cols[o.col]) if w != "middle"]
    return " ".join(words) or "middle"


def relation_question(objects: list[SceneObject], o: SceneObject, rng: np.random.Generator) -> tuple[str, str]:
    """Left/right (or above/below when in one column) of another object; position if alone."""
    others = [p for p in objects if p is not o]
    if not others:
        return f"Is the {o.name} on the left, in the middle or on the right?", ("left", "middle", "right")[o.col]
    p = others[int(rng.integers(len(others)))]
    if o.col != p.col:
        return f"Is the {o.name} left or right of the {p.name}?", "left" if o.col < p.col else "right"
    return f"Is the {o.name} above or below the {p.name}?", "above" if o.row < p.row else "below"


def existence_question(objects: list[SceneObject], rng: np.random.Generator) -> tuple[str, str]:
    """'Is there a <colour> <shape>?' with yes / no balanced."""
    present = {o.name for o in objects}
    if rng.random() < 0.5:
        return f"Is there a {sorted(present)[int(rng.integers(len(present)))]}?", "yes"
    absent = sorted(f"{c} {s}" for c in COLOURS for s in SHAPES if f"{c} {s}" not in present)
    return f"Is there a {absent[int(rng.integers(len(absent)))]}?", "no"
