"""The paper's own numbers (../shared/STUDY.md), for orientation next to ours.

They are the paper's results on the paper's benchmarks (CALVIN ABC->D average length 0-5, SimplerEnv
WidowX/Bridge success %, LIBERO-10 success %) with 1.4-30B VLMs: not comparable in absolute terms.
"""

from __future__ import annotations

import pandas as pd

# backbone: (CALVIN length, Simpler %, LIBERO-10 %); None where the paper gives no number.
MAIN_TABLE: dict[str, tuple[float, float, float | None]] = {
    "Qwen2.5-VL-3B": (3.856, 48.0, 43.0),
    "Qwen2.5-VL-7B": (4.057, 46.9, 45.0),
    "Qwen3-VL-2B": (4.142, 49.0, 55.8),
    "Qwen3-VL-4B": (3.943, 56.3, 44.4),
    "Qwen3-VL-8B": (4.035, 58.3, 46.2),
    "Qwen3-VL-30B-A3B": (4.075, 44.8, 46.8),
    "PaliGemma-1 3B": (3.506, 55.3, 44.2),
    "PaliGemma-2 3B": (3.406, 57.3, 46.2),
    "Kosmos-2 1.7B": (3.096, 60.4, 55.0),
    "OpenVLA (re-trained)": (2.548, 4.2, 53.7),
    "pi0 (re-implemented)": (3.509, 60.4, 46.0),
    "Qwen2.5-VL-3B architecture, random init": (1.381, 15.75, None),
}

# Rank reading of the paper's scatter plot (general VQA score vs VLA performance), approx.
CAPABILITY_SPEARMAN = {"CALVIN": 0.8, "Simpler": -0.4, "LIBERO-10": -0.2}

# Findings 3 / 4: (CALVIN length, Simpler %) per model and freezing condition.
FREEZING_TABLE = {
    "Qwen2.5-VL-3B": {"full": (3.856, 48.0), "freeze_vision": (2.855, 23.95), "freeze_word_embeddings": (3.849, 46.88)},
    "Qwen2.5-VL-7B": {"full": (4.057, 46.75), "freeze_vision": (2.823, 25.50), "freeze_word_embeddings": (3.874, 48.96)},
    "PaliGemma-1": {"full": (3.506, 55.25), "freeze_vision": (0.495, 13.25), "freeze_word_embeddings": (3.485, 52.25)},
}
# Simpler % of Qwen3-VL-4B: rows stage 1 (none / vision frozen / vision trained), columns stage 2 vision.
CONTROL_SUPERVISION_TABLE = {
    "no stage 1": {"stage 2 vision frozen": 27.6, "stage 2 vision trained": 56.3},
    "stage 1, vision frozen": {"stage 2 vision frozen": 28.0, "stage 2 vision trained": 56.3},
    "stage 1, vision trained": {"stage 2 vision frozen": 45.7, "stage 2 vision trained": 59.4},
}


def main_table() -> pd.DataFrame:
    """The paper's main table as a DataFrame (labelled as the paper's numbers)."""
    frame = pd.DataFrame.from_dict(MAIN_TABLE, orient="index", columns=["CALVIN length", "Simpler %", "LIBERO-10 %"])
    frame.index.name = "backbone (paper, paper's benchmarks)"
    return frame
