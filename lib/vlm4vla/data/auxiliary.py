"""Auxiliary embodied datasets (issue 7, STUDY.md finding 2): (frame, prompt, target text) items for a VLM.

Seven small analogues of the paper's auxiliary datasets, every label read from a DemoStore's simulator
ground truth (never from a model). Pixel coordinates are (x, y) = (column, row) of the stored frame.
    pointing      (RoboPoint)  "Point to the drawer. ..."                               -> "31 40"
    rgbd_spatial  (Vica-332k)  3-D gripper-object distance (5 cm bins), distance of a thing from the
                               camera (depth image, 10 cm bins), which is nearer the camera, which
                               looks larger (segmentation areas)                       -> "15", "larger"
    spatial_vqa   (BridgeVQA)  left / right, above / below (image), in front / behind (depth)
    action_vqa    (Robo2VLM)   where the gripper moves next (robot base frame: x right, y forward =
                               away from the base, z up; from the ee displacement MOTION_HORIZON
                               frames ahead), gripper open / closed, task phase (progress thirds)
    planning      (RoboBrain)  the gripper's pixel position 4, 8 and 12 frames ahead  -> "x1 y1 x2 y2 x3 y3"
    dense         (Omni-Generation) SIMPLIFIED: the paper generates full depth / segmentation images;
                               within a text-only contract we ask for a DENSE_GRID x DENSE_GRID map as
                               digits: depth levels 0..9 (median depth per block) or the majority
                               segmentation class per block                           -> "0011 0122 ..."
    vqa_mix       (VQA-Mix)    an equal mix of the six above (general VQA is mixed in at training
                               time, and the vision tower is frozen: backbones.auxiliary)
Pointing, depth order, relations and gripper state reuse ``data.embodied_qa`` (same wording as the
zero-shot embodied probes, which therefore measure transfer of these fine-tunes).

Which frames: build the items from a store generated apart from the policy's demonstrations
(notebook 04 uses another seed). Meta-World has 50 variations per task and all are taken (0-29 train,
30-49 evaluation), so an auxiliary store on the train variations shares initial states with the
policy's training data, never with evaluation. ``split`` holds out the last HELDOUT_SHARE of each
task's episodes for the skill probe.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Callable

import numpy as np
import pandas as pd

from vlm4vla.data.demos import DemoStore
from vlm4vla.data.embodied_qa import (EmbodiedQAConfig, _balanced_sample, _pair, _visible, depth_items, gripper_items,
                                      object_name, pointing_items, relation_items)
from vlm4vla.envs.ground_truth import GRIPPER, TASK_OBJECT

QTYPE_PREFIX = "aux_"  # qtype of auxiliary items in a mixed Corpus: "aux_<task>"
ANSWER_TYPES = ("word", "points", "grid")  # how an answer is scored (score_answers)
MOTION_HORIZON = 4  # frames ahead for "which way does the arm move next" (an action chunk, N=4)
MIN_MOTION_M = 0.01  # ... asked only when the gripper moves at least 1 cm ...
MOTION_DOMINANCE = 1.5  # ... and the main axis beats the second by this factor (unambiguous label)
WAYPOINT_STEPS = (4, 8, 12)  # MUT  # planning: frames ahead of each waypoint
DISTANCE_BIN_CM = 5  # gripper-object distance rounded to 5 cm
CAMERA_BIN_CM = 10  # distance from the camera rounded to 10 cm
MIN_SIZE_RATIO = 1.5  # "larger / smaller" asked only when segmentation areas differ by this factor
DENSE_GRID = 4  # dense maps are DENSE_GRID x DENSE_GRID blocks (16 digits: short enough to generate)
DEPTH_LEVELS = (0.8, 0.2)  # level i covers [0.8 + 0.2 i, 0.8 + 0.2 (i+1)) m, clipped to 0..9 (scene: 0.81-3.4 m)
HELDOUT_SHARE = 0.2  # of each task's episodes (at least one when a task has two or more)
POINT_TOLERANCE_PX = 4.0  # a point answer within this distance of the truth scores 1

MOTION_PROMPT = "Which way does the gripper move next: left, right, forward, back, up or down?"
PHASE_PROMPT = "The robot is asked to {instruction}. Is the task at its beginning, middle or end?"
PLAN_PROMPT = ("The robot is asked to {instruction}. Where will the gripper be in 4, 8 and 12 steps? "
               "Answer with x and y pixel coordinates.")
DISTANCE_PROMPT = "How far is the gripper from the {obj}, in cm?"
CAMERA_PROMPT = "How far is the {name} from the camera, in cm?"
SIZE_PROMPT = "Does the {a} look larger or smaller than the {b}?"
FRONT_PROMPT = "Is the {a} in front of or behind the {b}?"
DEPTH_MAP_PROMPT = "Give the depth map as a 4x4 grid of levels from 0 (near) to 9 (far)."
SEG_MAP_PROMPT = "Give the segmentation map as a 4x4 grid of classes: 0 background, 1 robot, 2 gripper, 3 object, 4 goal."
_NUM_RE = re.compile(r"-?\d+(?:\.\d+)?")
_AXES = (("right", "left"), ("forward", "back"), ("up", "down"))  # (+, -) word per robot-base axis


def _item(store: DemoStore, row: int, kind: str, prompt: str, answer: str, answer_type: str = "word",
          options: str = "", target: str = "") -> dict:
    t = store.table
    return {"row": row, "episode_index": int(t.at[row, "episode_index"]), "task": t.at[row, "task"], "kind": kind,
            "prompt": prompt, "answer": answer, "answer_type": answer_type, "options": options, "target": target}


def _from_embodied(items: list[dict], answer_type: str = "word") -> list[dict]:
    """embodied_qa items in this module's columns (x, y dropped: point answers are scored from text)."""
    return [{k: v for k, v in it.items() if k not in ("x", "y")} | {"answer_type": answer_type} for it in items]


# ---- 1. pointing ---------------------------------------------------------------------------------
def pointing_aux(store: DemoStore, row: int, qa: EmbodiedQAConfig) -> list[dict]:
    """The visible pixel of the gripper / task object nearest its projection (embodied_qa)."""
    return _from_embodied(pointing_items(store, row, qa), "points")


# ---- 2. rgbd_spatial -----------------------------------------------------------------------------
def rgbd_spatial_aux(store: DemoStore, row: int, qa: EmbodiedQAConfig) -> list[dict]:
    """3-D distance, distance from the camera, depth order and apparent size."""
    t = store.table
    obj = object_name(t.at[row, "task"])
    gap_cm = 100 * float(np.linalg.norm(np.subtract(t.at[row, "ee_pos"], t.at[row, "object_pos"])))
    out = [_item(store, row, "distance", DISTANCE_PROMPT.format(obj=obj), str(_bin(gap_cm, DISTANCE_BIN_CM)))]
    for name, (_, pixel) in _visible(store, row, qa).items():
        cm = 100 * float(store.depth[row][pixel])
        out.append(_item(store, row, "camera_distance", CAMERA_PROMPT.format(name=name), str(_bin(cm, CAMERA_BIN_CM)),
                         target=name))
    out += _from_embodied(depth_items(store, row, qa))
    return out + _size_items(store, row, qa)


def _bin(value: float, width: int) -> int:
    return int(width * round(value / width))


def _size_items(store: DemoStore, row: int, qa: EmbodiedQAConfig) -> list[dict]:
    pair = _pair(store, row, qa)
    if not pair:
        return []
    seg = np.asarray(store.segmentation[row])
    (a, _), (b, _) = pair
    area = {n: int((seg == (GRIPPER if n == "gripper" else TASK_OBJECT)).sum()) for n in (a, b)}
    ratio = area[a] / max(area[b], 1)
    if 1 / MIN_SIZE_RATIO < ratio < MIN_SIZE_RATIO:
        return []
    return [_item(store, row, "size", SIZE_PROMPT.format(a=a, b=b), "larger" if ratio > 1 else "smaller",
                  options="larger|smaller", target=f"{a}|{b}")]


# ---- 3. spatial_vqa ------------------------------------------------------------------------------
def spatial_vqa_aux(store: DemoStore, row: int, qa: EmbodiedQAConfig) -> list[dict]:
    """Image left / right and above / below (embodied_qa), and in front / behind from the depth image."""
    out = _from_embodied(relation_items(store, row, qa))
    for it in _from_embodied(depth_items(store, row, qa)):
        a, b = it["options"].split("|")
        out.append(_item(store, row, "front_behind", FRONT_PROMPT.format(a=a, b=b),
                         "in front" if it["answer"] == a else "behind", options="in front|behind", target=f"{a}|{b}"))
    return out


# ---- 4. action_vqa -------------------------------------------------------------------------------
def future_row(store: DemoStore, row: int, ahead: int) -> int | None:
    """The row ``ahead`` frames later in the same episode, else None."""
    t = store.table
    later = row + ahead
    if later >= len(t) or t.at[later, "episode_index"] != t.at[row, "episode_index"]:
        return None
    return later


def motion_word(displacement: np.ndarray) -> str | None:
    """Direction word of the main axis of a 3-D displacement (robot base frame), None if ambiguous."""
    size = np.abs(displacement)
    order = np.argsort(size)[::-1]
    if size[order[0]] < MIN_MOTION_M or size[order[0]] < MOTION_DOMINANCE * size[order[1]]:
        return None
    return _AXES[order[0]][0 if displacement[order[0]] > 0 else 1]


def action_vqa_aux(store: DemoStore, row: int, qa: EmbodiedQAConfig) -> list[dict]:
    """Next motion of the gripper, gripper open / closed, and task phase."""
    t = store.table
    out = _from_embodied(gripper_items(store, row, qa))
    later = future_row(store, row, MOTION_HORIZON)
    word = None if later is None else motion_word(np.subtract(t.at[later, "ee_pos"], t.at[row, "ee_pos"]))
    if word is not None:
        out.append(_item(store, row, "motion", MOTION_PROMPT, word, options="|".join(w for ax in _AXES for w in ax)))
    phase = ("beginning", "middle", "end")[min(int(3 * float(t.at[row, "progress"])), 2)]
    instruction = str(t.at[row, "instruction"]).rstrip(".? ")
    out.append(_item(store, row, "phase", PHASE_PROMPT.format(instruction=instruction), phase,
                     options="beginning|middle|end"))
    return out


# ---- 5. planning ---------------------------------------------------------------------------------
def planning_aux(store: DemoStore, row: int, qa: EmbodiedQAConfig) -> list[dict]:
    """Future gripper positions projected into this frame's camera (the camera is fixed)."""
    rows = [future_row(store, row, k) for k in WAYPOINT_STEPS]
    if None in rows:
        return []
    points = [store.table.at[r, "gripper_px"] for r in rows]
    size = store.frames.shape[1]
    if any(not (0 <= p[0] < size and 0 <= p[1] < size) for p in points):
        return []
    answer = " ".join(f"{int(math.floor(p[0]))} {int(math.floor(p[1]))}" for p in points)
    instruction = str(store.table.at[row, "instruction"]).rstrip(".? ")
    return [_item(store, row, "waypoints", PLAN_PROMPT.format(instruction=instruction), answer, "points",
                  target="gripper")]


# ---- 6. dense ------------------------------------------------------------------------------------
def block_view(image: np.ndarray, grid: int = DENSE_GRID) -> np.ndarray:
    """(H, W) -> (grid, grid, H/grid * W/grid): the pixels of each block."""
    h, w = image.shape
    bh, bw = h // grid, w // grid
    return image[:bh * grid, :bw * grid].reshape(grid, bh, grid, bw).transpose(0, 2, 1, 3).reshape(grid, grid, -1)


def depth_grid(depth: np.ndarray, grid: int = DENSE_GRID) -> np.ndarray:
    """(grid, grid) depth levels 0..9 from each block's median depth."""
    start, width = DEPTH_LEVELS
    median = np.median(block_view(np.asarray(depth, dtype=np.float32), grid), axis=2)
    return np.clip(np.floor((median - start) / width), 0, 9).astype(int)


def segmentation_grid(seg: np.ndarray, grid: int = DENSE_GRID) -> np.ndarray:
    """(grid, grid) majority class per block (ties: the lower class id)."""
    blocks = block_view(np.asarray(seg), grid)
    return np.array([[np.bincount(b, minlength=5).argmax() for b in row] for row in blocks])


def format_grid(grid: np.ndarray) -> str:
    """Rows of digits separated by spaces, e.g. '0011 0122 0122 1111'."""
    return " ".join("".join(str(int(v)) for v in row) for row in grid)


def dense_aux(store: DemoStore, row: int, qa: EmbodiedQAConfig) -> list[dict]:
    """A coarse depth map and a coarse segmentation map of the frame, as digit grids."""
    return [_item(store, row, "depth_map", DEPTH_MAP_PROMPT, format_grid(depth_grid(store.depth[row])), "grid"),
            _item(store, row, "segmentation_map", SEG_MAP_PROMPT, format_grid(segmentation_grid(store.segmentation[row])),
                  "grid")]


# ---- registry and sampling -----------------------------------------------------------------------
ItemBuilder = Callable[[DemoStore, int, EmbodiedQAConfig], list[dict]]
AUX_TASKS: dict[str, ItemBuilder] = {"pointing": pointing_aux, "rgbd_spatial": rgbd_spatial_aux,
                                     "spatial_vqa": spatial_vqa_aux, "action_vqa": action_vqa_aux,
                                     "planning": planning_aux, "dense": dense_aux}
MIX_TASK = "vqa_mix"  # equal shares of every task in AUX_TASKS
TASK_NAMES = (*AUX_TASKS, MIX_TASK)
# Sampling balances these columns: sub-kinds (question types) or answers.
BALANCE_BY = {"pointing": "target", "rgbd_spatial": "kind", "spatial_vqa": "answer", "action_vqa": "answer",
              "planning": "task", "dense": "kind"}
SPLITS = ("all", "train", "heldout")
COLUMNS = ["row", "episode_index", "task", "aux_task", "kind", "prompt", "answer", "answer_type", "options", "target"]


def check_aux_task(task: str) -> str:
    """``task`` if it names an auxiliary dataset, else a ValueError naming the nearest ones."""
    if task not in TASK_NAMES:
        near = difflib.get_close_matches(task, TASK_NAMES, n=3, cutoff=0.0)
        raise ValueError(f"auxiliary task={task!r} is invalid: allowed {list(TASK_NAMES)}; nearest: {near}")
    return task


def split_episodes(store: DemoStore, split: str) -> np.ndarray:
    """Episode indices of ``split``: 'heldout' = the last HELDOUT_SHARE (>= 1 if >= 2) of each task's."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is invalid: allowed {SPLITS}")
    held = []
    for _, eps in store.episodes.groupby("task"):
        idx = np.sort(eps["episode_index"].to_numpy())
        k = max(1, round(HELDOUT_SHARE * len(idx))) if len(idx) >= 2 else 0
        held += idx[len(idx) - k:].tolist()
    every = store.episodes["episode_index"].to_numpy()
    return {"all": every, "heldout": np.array(sorted(held), dtype=int),
            "train": np.setdiff1d(every, held)}[split]


def make_auxiliary(store: DemoStore, task: str, n: int, seed: int = 0, split: str = "all") -> pd.DataFrame:
    """Up to ``n`` items of auxiliary ``task`` from the episodes of ``split``, balanced (BALANCE_BY), seeded.

    Columns: row (frame), episode_index, task (Meta-World), aux_task, kind (question type), prompt,
    answer, answer_type (word / points / grid), options ("a|b" for word answers), target.
    """
    check_aux_task(task)
    if n < 1:
        raise ValueError(f"n={n!r} is invalid: must be >= 1")
    if task == MIX_TASK:
        shares = [n // len(AUX_TASKS) + (i < n % len(AUX_TASKS)) for i in range(len(AUX_TASKS))]
        parts = [make_auxiliary(store, t, k, seed, split) for t, k in zip(AUX_TASKS, shares) if k]
        return pd.concat(parts, ignore_index=True).assign(aux_task=MIX_TASK)[COLUMNS]
    qa = EmbodiedQAConfig(seed=seed)
    episodes = set(split_episodes(store, split).tolist())
    rows = [r for r in range(len(store)) if int(store.table.at[r, "episode_index"]) in episodes]
    items = pd.DataFrame([it for r in rows for it in AUX_TASKS[task](store, r, qa)])
    if items.empty:
        return pd.DataFrame(columns=COLUMNS)
    items = _balanced_sample(items.assign(aux_task=task), BALANCE_BY[task], n, seed)
    return items[COLUMNS]


# ---- scoring (pure: used by the skill probe) -----------------------------------------------------
def parse_numbers(text: str) -> list[float]:
    """Every number in ``text``."""
    return [float(x) for x in _NUM_RE.findall(text)]


def point_error(answer: str, predicted: str, fallback: tuple[float, float]) -> float:
    """Mean pixel distance over the answer's (x, y) points; missing predicted points count as ``fallback``."""
    truth = np.array(parse_numbers(answer)).reshape(-1, 2)
    guess = parse_numbers(predicted)[:truth.size]
    guess = np.array(guess[:len(guess) // 2 * 2] + list(fallback) * (truth.shape[0] - len(guess) // 2)).reshape(-1, 2)
    return float(np.linalg.norm(guess - truth, axis=1).mean())


def grid_accuracy(answer: str, predicted: str) -> float:
    """Share of the answer's digits matched position by position (missing digits are wrong)."""
    truth, guess = re.sub(r"\D", "", answer), re.sub(r"\D", "", predicted)
    return sum(a == b for a, b in zip(truth, guess)) / len(truth)


def score_answers(items: pd.DataFrame, predicted: list[str], image_size: int) -> pd.DataFrame:
    """``items`` with ``predicted``, ``error_px`` (point answers; an unparsed point counts as the image
    centre), ``parsed`` and ``score`` in [0, 1] (word: exact match; points: error <= POINT_TOLERANCE_PX;
    grid: share of cells right)."""
    out = items.assign(predicted=predicted).reset_index(drop=True)
    centre = (image_size / 2, image_size / 2)
    error, score, parsed = [], [], []
    for it in out.itertuples():
        pred = it.predicted.strip().lower().rstrip(".").strip()
        if it.answer_type == "points":
            e = point_error(it.answer, pred, centre)
            error.append(e), score.append(float(e <= POINT_TOLERANCE_PX))
            parsed.append(len(parse_numbers(pred)) >= len(parse_numbers(it.answer)))
        elif it.answer_type == "grid":
            error.append(np.nan), score.append(grid_accuracy(it.answer, pred))
            parsed.append(len(re.sub(r"\D", "", pred)) == len(re.sub(r"\D", "", it.answer)))
        else:
            error.append(np.nan), score.append(float(pred == it.answer))
            parsed.append(pred in it.options.split("|") if it.options else bool(parse_numbers(pred)))
    return out.assign(error_px=error, score=score, parsed=parsed)


# The headline skill of each task: (column of score_answers, name, higher is better).
SKILL_METRICS = {"pointing": ("error_px", "error_px", False), "planning": ("error_px", "error_px", False),
                 "dense": ("score", "cell_accuracy", True), "vqa_mix": ("score", "mean_score", True)}
DEFAULT_METRIC = ("score", "accuracy", True)


def skill_summary(task: str, scored: pd.DataFrame) -> dict[str, float | str | bool]:
    """The task's headline skill on scored items (see SKILL_METRICS) with n, parsed share, mean score."""
    column, name, higher = SKILL_METRICS.get(task, DEFAULT_METRIC)
    return {"skill": float(scored[column].mean()) if len(scored) else float("nan"), "skill_metric": name,
            "skill_higher_is_better": higher, "score": float(scored["score"].mean()) if len(scored) else float("nan"),
            "parsed": float(scored["parsed"].mean()) if len(scored) else float("nan"), "n": int(len(scored))}
