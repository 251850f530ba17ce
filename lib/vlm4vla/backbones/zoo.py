"""The VLM zoo: named backbones (family + size + pretraining budget / recipe) and how to build one.

The zoo stands in for the paper's backbone list (Qwen2.5-VL 3B/7B, PaliGemma, Kosmos, ...): several
families and sizes whose general VQA skill differs widely, plus a ``scratch`` twin (same
architecture, random init, no pretraining) for the "VLM init vs from scratch" comparison.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vlm4vla.backbones.base import Backbone, BackboneConfig, make_backbone
from vlm4vla.backbones.pretrain import PretrainConfig, pretrain
from vlm4vla.data.corpus import CorpusSplits

SUMMARY_FILE = "summary.json"
HISTORY_FILE = "history.csv"
ANSWERS_FILE = "vqa_answers.csv"


@dataclass(frozen=True)
class ZooSpec:
    """One zoo member: a name, its architecture and its pretraining (None: from scratch)."""

    name: str
    backbone: BackboneConfig
    pretrain: PretrainConfig | None
    note: str = ""

    @property
    def scratch(self) -> bool:
        return self.pretrain is None or self.pretrain.steps == 0


def scratch_twin(spec: ZooSpec) -> ZooSpec:
    """Same architecture and seed, random init, no pretraining (the paper's 'random init' row)."""
    return ZooSpec(f"{spec.name}-scratch", spec.backbone, None, f"random-init twin of {spec.name}")


def _spec(name: str, family: str, steps: int, recipe: str = "qa+captions", note: str = "", **size: Any) -> ZooSpec:
    return ZooSpec(name, BackboneConfig(family=family, **size), PretrainConfig(steps=steps, recipe=recipe), note)


_TINY = {"hidden_size": 64, "text_layers": 2, "vision_layers": 2, "heads": 2, "vocab_size": 512}
_QWEN_S = _spec("qwen-s-long", "qwen2_vl", 1500, note="the paper's main family, long QA+caption budget")
ZOOS: dict[str, tuple[ZooSpec, ...]] = {
    "default": (
        _QWEN_S,
        _spec("qwen-m-long", "qwen2_vl", 1500, note="larger Qwen (the 3B -> 7B step)", hidden_size=256, text_layers=6, vision_layers=4),
        _spec("qwen-s-short", "qwen2_vl", 200, note="same as qwen-s-long, short budget"),
        _spec("paligemma-s-captions", "paligemma", 1500, recipe="captions", note="captions only: sees images, no questions"),
        _spec("idefics3-s-long", "idefics3", 1500, note="SmolVLM-style, 16 merged image tokens"),
        _spec("llava-s-mid", "llava", 600, note="LLaVA-style, mid budget"),
        scratch_twin(_QWEN_S),
    ),
    "smoke": (
        _spec("qwen-tiny", "qwen2_vl", 20, **_TINY),
        _spec("idefics3-tiny", "idefics3", 20, recipe="captions", **_TINY),
    ),
}


def get_zoo(name: str) -> tuple[ZooSpec, ...]:
    """The zoo called ``name``; an unknown name lists the nearest valid ones."""
    if name not in ZOOS:
        raise ValueError(f"unknown zoo {name!r}; nearest: {difflib.get_close_matches(name, ZOOS, n=3, cutoff=0.0)}")
    return ZOOS[name]


def build_zoo_member(spec: ZooSpec, corpus: CorpusSplits, out_dir: str | Path, n_probe: int = 200,
                     progress: bool = True) -> dict[str, Any]:
    """Make, pretrain, probe (general VQA on held-out) and save ``spec`` under out_dir/<name>.

    The directory holds the checkpoint, its README.md card, history.csv and summary.json.
    Returns the summary (flat: name, family, params, steps, recipe, vqa accuracy overall / by type).
    """
    from vlm4vla.probes import general_vqa_accuracy  # probes sit above backbones; used only here

    backbone = make_backbone(spec.backbone, corpus.train.texts())
    history: list[dict[str, float]] = []
    if not spec.scratch:
        history = pretrain(backbone, corpus.train, dataclasses.replace(spec.pretrain, progress=progress))
    vqa = general_vqa_accuracy(backbone, corpus.heldout, n=n_probe)
    summary = member_summary(spec, backbone, vqa, corpus)
    backbone.card.update({"name": spec.name, "note": spec.note, "corpus": corpus_label(corpus),
                          "general_vqa": _vqa_text(vqa)})
    extra = {HISTORY_FILE: pd.DataFrame(history, columns=["step", "loss", "lr", "seconds"]).to_csv(index=False),
             SUMMARY_FILE: json.dumps(summary, indent=2) + "\n",
             ANSWERS_FILE: vqa["answers"].to_csv(index=False)}
    backbone.save(Path(out_dir) / spec.name, extra_files=extra)
    return summary


def corpus_label(corpus: CorpusSplits) -> str:
    c = corpus.config
    return f"procedural scenes seed {c.seed}: {c.n_train} train / {c.n_heldout} held-out images, {c.image_size} px"


def _vqa_text(vqa: dict) -> str:
    o = vqa["overall"]
    return f"{o['accuracy']:.3f} [{o['ci_low']:.3f}, {o['ci_high']:.3f}] on {o['n']} held-out questions"


def member_summary(spec: ZooSpec, backbone: Backbone, vqa: dict, corpus: CorpusSplits) -> dict[str, Any]:
    """Flat, JSON-able facts of one built member."""
    out: dict[str, Any] = {"name": spec.name, "family": spec.backbone.family, "hidden_size": spec.backbone.hidden_size,
                           "text_layers": spec.backbone.text_layers, "params": backbone.n_parameters(),
                           "steps": 0 if spec.scratch else spec.pretrain.steps,
                           "recipe": "none" if spec.scratch else spec.pretrain.recipe,
                           "image_tokens": backbone.n_image_tokens}
    for key, value in vqa["overall"].items():
        out[f"vqa_{key}"] = value
    for qtype, summary in vqa["by_type"].items():
        for key, value in summary.items():
            out[f"vqa_{qtype}_{key}"] = value
    return out


def zoo_table(out_dir: str | Path, names: list[str] | None = None) -> pd.DataFrame:
    """One row per built member (its summary.json), in zoo order when ``names`` is given."""
    out_dir = Path(out_dir)
    names = names or sorted(p.name for p in out_dir.iterdir() if (p / SUMMARY_FILE).is_file())
    return pd.DataFrame([json.loads((out_dir / n / SUMMARY_FILE).read_text()) for n in names])


def zoo_answers(out_dir: str | Path, names: list[str]) -> dict[str, pd.DataFrame]:
    """Each member's held-out VQA answers (question, truth, prediction, correct)."""
    return {n: pd.read_csv(Path(out_dir) / n / ANSWERS_FILE, keep_default_na=False) for n in names}


def zoo_histories(out_dir: str | Path, names: list[str]) -> dict[str, pd.DataFrame]:
    """Each member's pretraining history (empty for scratch members)."""
    return {n: pd.read_csv(Path(out_dir) / n / HISTORY_FILE) for n in names}
