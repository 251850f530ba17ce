"""The zoo's probe scores as one table per backbone (the x axes of finding 1's scatter plots)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vlm4vla.backbones.zoo import zoo_table

# summary.json columns that are probe scores: general VQA, and every embodied / linear probe ("probe_*").
GENERAL_VQA = "general_vqa_accuracy"


def load_probes(root: Path, include_scratch: bool = False) -> pd.DataFrame:
    """Probe scores indexed by zoo name: ``general_vqa_accuracy`` and every ``probe_*`` column."""
    table = zoo_table(root / "artifacts/zoo")
    if not include_scratch:
        table = table[table["steps"] > 0]
    table = table.set_index("name").rename(columns={"vqa_accuracy": GENERAL_VQA})
    columns = [GENERAL_VQA, *sorted(c for c in table.columns if c.startswith("probe_"))]
    return table[columns].astype(float)
