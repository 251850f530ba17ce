"""The zoo's probe scores as one table per backbone (the x axes of finding 1's scatter plots).

General VQA comes from the zoo's summary table (``artifacts/zoo-summary.json``, notebook 01-zoo, kept in git); the embodied and linear
robot probes from ``artifacts/robot-probes/<group>/<member>.json`` (notebook 08-robot-probes), one
file per backbone, where ``<group>`` is the folder the backbone lives in (``zoo``,
``control-supervision``, ``auxiliary-vlms``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from vlm4vla.backbones.zoo import ZOO_SUMMARY, read_zoo_summary
from vlm4vla.probes.embodied import EMBODIED_PROBES
from vlm4vla.probes.linear import TARGETS
from vlm4vla.probes.summary import PREFIX

GENERAL_VQA = "general_vqa_accuracy"
ROBOT_PROBES_DIR = "artifacts/robot-probes"
# The score of each robot probe (``robot_probe_summary`` also writes its interval, n, chance and
# reference points as ``probe_<name>_<field>``; those stay in load_robot_probes' full table).
ROBOT_PROBE_SCORES = (*(PREFIX + name for name in EMBODIED_PROBES), *(f"{PREFIX}linear_{t}_r2" for t in TARGETS))


def read_robot_probes(folder: Path) -> pd.DataFrame:
    """Every ``probe_*`` column of the results in one group folder, indexed by backbone name (no rows
    when there are none)."""
    records = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]
    table = pd.DataFrame([r["probes"] for r in records], index=pd.Index([r["name"] for r in records], name="name"))
    return table.astype(float)


def load_robot_probes(root: Path, group: str) -> pd.DataFrame:
    """The robot probes of the backbones of ``group`` (``zoo``, ``control-supervision``,
    ``auxiliary-vlms``): every ``probe_*`` column (scores, intervals, chance and reference points)."""
    return read_robot_probes(root / ROBOT_PROBES_DIR / group)


def load_probes(root: Path, include_scratch: bool = False) -> pd.DataFrame:
    """Probe scores indexed by zoo name: ``general_vqa_accuracy`` and each robot probe's score.

    Robot probe scores come from the robot-probes stage; a ``probe_*`` score column already in a
    member's summary.json is replaced by it. Members not yet probed have NaN there.
    """
    table = read_zoo_summary(root / ZOO_SUMMARY)
    if not include_scratch:
        table = table[table["steps"] > 0]
    table = table.set_index("name").rename(columns={"vqa_accuracy": GENERAL_VQA})
    robot = load_robot_probes(root, "zoo")
    table = table.drop(columns=[c for c in robot.columns if c in table.columns]).join(robot)
    return table[[GENERAL_VQA, *(c for c in ROBOT_PROBE_SCORES if c in table.columns)]].astype(float)
