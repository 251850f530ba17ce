"""Embodied question/answer items built from a DemoStore's simulator ground truth.

Four kinds, asked about the two things every Meta-World frame shows (the gripper and the task
object), worded in the general corpus's QA style (short question, one-word or numeric answer):
    pointing     "Point to the gripper. Answer with its x and y pixel coordinates."  -> "43 35"
    depth_order  "Which is closer to the camera, the gripper or the button?"        -> "gripper"
    relation     "Is the gripper left or right of the button?"                       -> "right"
                 "Is the gripper above or below the button?"                         -> "above"
    gripper      "Is the gripper open or closed?"                                    -> "closed"
Pixel coordinates are those of the stored frame: (x, y) = (column, row), origin top-left (as in
demos.py). Labels come only from ground truth: pixel projections (``gripper_px`` / ``object_px``)
moved to the nearest pixel of the thing's segmentation class, the segmentation (an item is asked only when its things are visible), the depth image (the visible
surface nearest the projected point) and ``gripper_open``. Items are sampled balanced over answers.

The table serves the embodied probes (zero-shot) and, later, auxiliary fine-tuning data (issue 7):
columns ``row`` (frame row in the store), ``episode_index``, ``task``, ``kind``, ``prompt``,
``answer``, ``options`` (the two valid answers "a|b"; "" for pointing), ``target`` (pointing: the
named thing; depth: "gripper" or "object", whichever is nearer; relation: "a|b"; gripper: "gripper"),
``x``/``y`` (pointing truth, else NaN).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vlm4vla.data.demos import DemoStore
from vlm4vla.envs.ground_truth import GRIPPER, TASK_OBJECT

KINDS = ("pointing", "depth_order", "relation", "gripper")
POINT_PROMPT = "Point to the {name}. Answer with its x and y pixel coordinates."
DEPTH_PROMPT = "Which is closer to the camera, the {a} or the {b}?"
HORIZONTAL_PROMPT = "Is the {a} left or right of the {b}?"  # the corpus's relation wording
VERTICAL_PROMPT = "Is the {a} above or below the {b}?"
GRIPPER_PROMPT = "Is the gripper open or closed?"
# What the task object is called, per task (the thing a person would name in the frame).
OBJECT_NAMES = {
    "button-press-topdown-v3": "button", "drawer-close-v3": "drawer", "drawer-open-v3": "drawer",
    "coffee-button-v3": "coffee machine", "coffee-push-v3": "mug", "coffee-pull-v3": "mug",
    "door-open-v3": "door", "door-unlock-v3": "lock", "hammer-v3": "hammer", "handle-pull-v3": "handle",
    "lever-pull-v3": "lever", "peg-insert-side-v3": "peg", "shelf-place-v3": "block",
    "window-open-v3": "window", "window-close-v3": "window", "pick-place-v3": "puck", "push-v3": "puck",
}
_POINT_RE = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class EmbodiedQAConfig:
    """How many items per kind, from which seed, and the margins that make a label unambiguous."""

    n_per_kind: int = 200
    seed: int = 0
    min_visible_px: int = 3  # a thing must cover this many segmentation pixels to be asked about
    visible_radius: int = 2  # ... and appear within this many pixels of its projected point
    min_depth_gap_m: float = 0.03  # depth questions only when the surfaces differ by this much
    min_offset_px: float = 3.0  # relation questions only when the points differ by this much

    def __post_init__(self) -> None:
        for name, lo in (("n_per_kind", 1), ("min_visible_px", 1), ("visible_radius", 0)):
            if getattr(self, name) < lo:
                raise ValueError(f"EmbodiedQAConfig.{name}={getattr(self, name)!r} is invalid: must be >= {lo}")
        for name in ("min_depth_gap_m", "min_offset_px"):
            if getattr(self, name) < 0:
                raise ValueError(f"EmbodiedQAConfig.{name}={getattr(self, name)!r} is invalid: must be >= 0")


def object_name(task: str) -> str:
    """Word for the task object of ``task`` (its first word when not listed in OBJECT_NAMES)."""
    return OBJECT_NAMES.get(task, task.split("-")[0])


def segmentation_class(name: str) -> int:
    """Segmentation class id of a named thing: the gripper, else the task object."""
    return GRIPPER if name == "gripper" else TASK_OBJECT


def format_point(x: float, y: float) -> str:
    """The pointing answer: integer pixel column and row, e.g. '43 35'."""
    return f"{int(np.floor(x))} {int(np.floor(y))}"


def parse_point(text: str) -> tuple[float, float] | None:
    """The first two numbers in ``text`` as (x, y), or None when there are fewer than two."""
    nums = _POINT_RE.findall(text)
    return (float(nums[0]), float(nums[1])) if len(nums) >= 2 else None


def _things(store: DemoStore, row: int) -> dict[str, tuple[np.ndarray, int]]:
    """Named things of one frame: name -> (projected pixel (2,), segmentation class)."""
    t = store.table
    obj = object_name(t.at[row, "task"])
    return {"gripper": (np.asarray(t.at[row, "gripper_px"], dtype=float), segmentation_class("gripper")),
            obj: (np.asarray(t.at[row, "object_px"], dtype=float), segmentation_class(obj))}


def visible_pixel(seg: np.ndarray, px: np.ndarray, cls: int, radius: int) -> tuple[int, int] | None:
    """(row, col) of the pixel of class ``cls`` nearest ``px`` within ``radius``, else None."""
    h, w = seg.shape
    col, row = int(np.floor(px[0])), int(np.floor(px[1]))
    best, best_d = None, np.inf
    for r in range(max(row - radius, 0), min(row + radius + 1, h)):
        for c in range(max(col - radius, 0), min(col + radius + 1, w)):
            d = (r - row) ** 2 + (c - col) ** 2
            if seg[r, c] == cls and d < best_d:
                best, best_d = (r, c), d
    return best


def _visible(store: DemoStore, row: int, cfg: EmbodiedQAConfig) -> dict[str, tuple[np.ndarray, tuple[int, int]]]:
    """Things visible in frame ``row``: name -> (projected pixel, nearest visible pixel (row, col))."""
    seg = np.asarray(store.segmentation[row])
    out = {}
    for name, (px, cls) in _things(store, row).items():
        hit = visible_pixel(seg, px, cls, cfg.visible_radius)
        if hit is not None and int((seg == cls).sum()) >= cfg.min_visible_px:
            out[name] = (px, hit)
    return out


def _pair(store: DemoStore, row: int, cfg: EmbodiedQAConfig) -> list[tuple[str, tuple[np.ndarray, tuple[int, int]]]]:
    """Both visible things in a seeded order per frame (so the first-named is not always the gripper)."""
    vis = list(_visible(store, row, cfg).items())
    if len(vis) < 2:
        return []
    return vis[::-1] if np.random.default_rng([cfg.seed, row]).random() < 0.5 else vis


def _base(store: DemoStore, row: int, kind: str) -> dict:
    t = store.table
    return {"row": row, "episode_index": int(t.at[row, "episode_index"]), "task": t.at[row, "task"], "kind": kind,
            "options": "", "x": np.nan, "y": np.nan}


def pointing_items(store: DemoStore, row: int, cfg: EmbodiedQAConfig) -> list[dict]:
    """One item per visible thing: the answer is its visible pixel nearest its projected point (so the
    answer always lies on the thing, as RoboPoint's targets do); x, y hold that pixel's centre."""
    out = []
    for name, (_, (r, c)) in _visible(store, row, cfg).items():
        item = _base(store, row, "pointing")
        item.update(prompt=POINT_PROMPT.format(name=name), answer=format_point(c, r), target=name, x=c + 0.5, y=r + 0.5)
        out.append(item)
    return out


def depth_items(store: DemoStore, row: int, cfg: EmbodiedQAConfig) -> list[dict]:
    """Which of the two visible things has the nearer surface (depth image at its visible pixel)."""
    pair = _pair(store, row, cfg)
    if not pair:
        return []
    (a, (_, pa)), (b, (_, pb)) = pair
    da, db = float(store.depth[row][pa]), float(store.depth[row][pb])
    if abs(da - db) < cfg.min_depth_gap_m:
        return []
    item = _base(store, row, "depth_order")
    answer = a if da < db else b
    item.update(prompt=DEPTH_PROMPT.format(a=a, b=b), answer=answer, options=f"{a}|{b}",
                target="gripper" if answer == "gripper" else "object")
    return [item]


def relation_items(store: DemoStore, row: int, cfg: EmbodiedQAConfig) -> list[dict]:
    """Left/right and above/below of one thing relative to the other (projected points)."""
    pair = _pair(store, row, cfg)
    if not pair:
        return []
    (a, (pa, _)), (b, (pb, _)) = pair
    dx, dy = pa - pb
    out = []
    if abs(dx) >= cfg.min_offset_px:
        out.append({**_base(store, row, "relation"), "prompt": HORIZONTAL_PROMPT.format(a=a, b=b),
                    "answer": "left" if dx < 0 else "right", "options": "left|right", "target": f"{a}|{b}"})
    if abs(dy) >= cfg.min_offset_px:
        out.append({**_base(store, row, "relation"), "prompt": VERTICAL_PROMPT.format(a=a, b=b),
                    "answer": "above" if dy < 0 else "below", "options": "above|below", "target": f"{a}|{b}"})
    return out


def gripper_items(store: DemoStore, row: int, cfg: EmbodiedQAConfig) -> list[dict]:
    """Open or closed, from the simulator's gripper opening (asked when the gripper is visible)."""
    if "gripper" not in _visible(store, row, cfg):
        return []
    item = _base(store, row, "gripper")
    answer = "open" if bool(store.table.at[row, "gripper_open"]) else "closed"
    item.update(prompt=GRIPPER_PROMPT, answer=answer, options="open|closed", target="gripper")
    return [item]


# Sampling balances these columns: pointing over named things, depth over which thing is nearer.
BALANCE_BY = {"pointing": "target", "depth_order": "target", "relation": "answer", "gripper": "answer"}
BUILDERS = {"pointing": pointing_items, "depth_order": depth_items, "relation": relation_items, "gripper": gripper_items}


def make_embodied_qa(store: DemoStore, kind: str, cfg: EmbodiedQAConfig = EmbodiedQAConfig()) -> pd.DataFrame:
    """Up to ``cfg.n_per_kind`` items of ``kind``, balanced over answers (seeded; same store -> same items).

    Every frame is a candidate; answers with fewer candidates are all kept, the rest sampled equally.
    """
    if kind not in BUILDERS:
        raise ValueError(f"kind={kind!r} is invalid: must be one of {KINDS}")
    rows = [item for r in range(len(store)) for item in BUILDERS[kind](store, r, cfg)]
    columns = ["row", "episode_index", "task", "kind", "prompt", "answer", "options", "target", "x", "y"]
    items = pd.DataFrame(rows, columns=columns)
    if items.empty:
        return items
    return _balanced_sample(items, BALANCE_BY[kind], cfg.n_per_kind, cfg.seed)


def _balanced_sample(items: pd.DataFrame, by: str, n: int, seed: int) -> pd.DataFrame:
    """At most ``n`` rows, as equal as possible over the values of ``by``, in a seeded order."""
    rng = np.random.default_rng(seed)
    groups = [g.index.to_numpy()[rng.permutation(len(g))] for _, g in sorted(items.groupby(by), key=lambda kv: str(kv[0]))]
    quota = _quotas([len(g) for g in groups], n)
    keep = np.concatenate([g[:q] for g, q in zip(groups, quota)])
    return items.loc[np.sort(keep)].reset_index(drop=True)


def _quotas(sizes: list[int], n: int) -> list[int]:
    """Water-filling: each group gets an equal share of ``n``, capped by its size."""
    quota, left = [0] * len(sizes), min(n, sum(sizes))
    while left > 0:
        open_ = [i for i, s in enumerate(sizes) if quota[i] < s]
        share = max(left // len(open_), 1)
        for i in open_:
            add = min(share, sizes[i] - quota[i], left)
            quota[i], left = quota[i] + add, left - add
    return quota


def make_embodied_qa_all(store: DemoStore, cfg: EmbodiedQAConfig = EmbodiedQAConfig()) -> pd.DataFrame:
    """Items of every kind in KINDS, concatenated."""
    return pd.concat([make_embodied_qa(store, k, cfg) for k in KINDS], ignore_index=True)
