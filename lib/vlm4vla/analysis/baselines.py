"""The vision-free baselines (null, blind replay) and the expert, per task, next to policy success.

``notebooks/10-baselines.py`` evaluates them on the runs' own evaluation episodes and writes
``artifacts/baselines/baselines.json`` (the harness's dict per reference policy);
``notebooks/11-libero-baselines.py`` does the same for the LIBERO runs (``artifacts/libero-baselines``;
empty where LIBERO was not recorded).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

BASELINES_FILE = "artifacts/baselines/baselines.json"
BASELINE_FILES = {"metaworld": BASELINES_FILE, "libero": "artifacts/libero-baselines/baselines.json"}
_STAGES = {"metaworld": "baselines", "libero": "libero_baselines"}
REFERENCES = ("null", "blind replay", "expert")


def load_baselines(root: Path, benchmark: str = "metaworld") -> pd.DataFrame:
    """Success rate per task (rows, plus ``mean``) of each reference policy (columns) on ``benchmark``;
    no columns where the stage computed none (LIBERO not recorded)."""
    if benchmark not in BASELINE_FILES:
        raise ValueError(f"benchmark={benchmark!r}: allowed is one of {tuple(BASELINE_FILES)}")
    path = root / BASELINE_FILES[benchmark]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro {_STAGES[benchmark]}`")
    results = json.loads(path.read_text())
    if not results:
        return pd.DataFrame(columns=[])
    table = pd.DataFrame({name: {task: r["success_rate"] for task, r in res["per_task"].items()}
                          for name, res in results.items()})
    table.loc["mean"] = [res["mean_success"] for res in results.values()]
    return table[[c for c in REFERENCES if c in table.columns]]


def per_task_with_baselines(episodes: pd.DataFrame, by: str, baselines: pd.DataFrame) -> pd.DataFrame:
    """Success per task (rows, plus ``mean``) for each value of ``by`` (columns, mean over seeds), with
    the reference policies' columns appended on the same tasks."""
    per_seed = episodes.groupby([by, "seed", "task"])["success_rate"].mean()
    table = per_seed.groupby([by, "task"]).mean().unstack(by)
    table.loc["mean"] = episodes.groupby([by, "seed"])["success_rate"].mean().groupby(by).mean()
    missing = sorted(set(table.index) - set(baselines.index))
    if missing:
        raise ValueError(f"baselines have no rows for tasks {missing}: re-run `dvc repro baselines` on this suite")
    return table.join(baselines, how="left")


def above_blind(table: pd.DataFrame, column: str) -> list[str]:
    """Tasks (not ``mean``) on which ``column`` beats the blind replay."""
    tasks = table.drop(index="mean", errors="ignore")
    return tasks.index[tasks[column] > tasks["blind replay"]].tolist()


def against_blind(table: pd.DataFrame, references: dict[str, pd.DataFrame]) -> list[str]:
    """Per benchmark, how the pretrained backbones' mean success (``table``: ``backbones.main_table``)
    compares with the blind replay's (``references``: ``load_baselines`` per benchmark). When none
    beats it, the ranking of backbones on that benchmark measures failure modes, not what vision adds."""
    lines = []
    pretrained = table[table["init"] == "pretrained"]
    for benchmark, group in pretrained.groupby("benchmark"):
        refs = references.get(benchmark)
        if refs is None or "blind replay" not in refs.columns:
            continue
        blind = float(refs.loc["mean", "blind replay"])
        above = group[group["success"] > blind]["backbone"].tolist()
        if above:
            lines.append(f"On {benchmark}, {len(above)} of {len(group)} backbones beat the blind replay's {blind:.2f} "
                         f"(a demonstration's actions without images): {', '.join(above)}.")
        else:
            lines.append(f"On {benchmark} no backbone reaches the blind replay's {blind:.2f} (best {group['success'].max():.2f}; "
                         "a demonstration's actions without images): the policies fail where replaying a demonstration "
                         "succeeds, so their ranking here says little about what the VLM adds.")
    return lines
