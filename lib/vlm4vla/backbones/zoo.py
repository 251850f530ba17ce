"""The VLM zoo: named backbones (family + size + pretraining budget / recipe) and how to build one.

The zoo stands in for the paper's backbone list (Qwen2.5-VL 3B/7B, PaliGemma, Kosmos, ...): several
families and sizes whose general VQA skill differs widely, plus a ``scratch`` twin (same
architecture, random init, no pretraining) for the "VLM init vs from scratch" comparison.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vlm4vla.backbones.base import Backbone, BackboneConfig, make_backbone
from vlm4vla.backbones.pretrain import PretrainConfig, history_csv, pretrain
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
    return ZooSpec(f"{spec.name}-scratch", dataclasses.replace(spec.backbone, vision_init="random"), None,
                   f"random-init twin of {spec.name}")


def _spec(name: str, family: str, steps: int, recipe: str = "qa+captions", note: str = "", curriculum: int = 300,
          lr: float = 1e-3, **size: Any) -> ZooSpec:
    pretraining = PretrainConfig(steps=steps, recipe=recipe, lr=lr, curriculum_steps=min(curriculum, steps))
    return ZooSpec(name, BackboneConfig(family=family, **size), pretraining, note)


# Sizes: from scratch, the tiny models here first learn the answer priors and ignore the image (held-out
# loss equal with images shuffled across the batch). "s" (hidden 64, 2+2 layers) starts to use the image
# after ~150 steps of the single-object curriculum (held-out loss 0.97 vs 0.98 shuffled at 150, 0.42 vs
# 0.59 at 800); hidden 128, 3+3 ("m") needs lr 5e-4: at 1e-3 it stayed at the prior (VQA 0.37 after 1500
# steps), at 5e-4 it reached 0.50 / 0.55 after 1000 / 2000. Measured general VQA (300 held-out questions,
# seed 0) along the zoo recipe: qwen-s 0.36 / 0.45 / 0.47 / 0.51 / 0.55 at 500 / 1000 / 1500 / 3000 / 4500 steps;
# llava-s 0.38 / 0.51 / 0.52 / 0.56 at 500 / 1000 / 1500 / 3000. Step cost (batch 16, 1 thread, quiet
# machine): qwen-s 0.09 s, idefics3-s 0.045 s, llava-s / paligemma-s 0.065 s, qwen-m 0.23 s (2x when shared).
_S = {"hidden_size": 64, "text_layers": 2, "vision_layers": 2, "heads": 2}
_M = {"hidden_size": 128, "text_layers": 3, "vision_layers": 3, "heads": 4}
_TINY = {"hidden_size": 64, "text_layers": 2, "vision_layers": 2, "heads": 2, "vocab_size": 512}
_QWEN_S = _spec("qwen-s-long", "qwen2_vl", 4500, note="the paper's main family, long QA+caption budget", **_S)
ZOOS: dict[str, tuple[ZooSpec, ...]] = {
    "default": (
        _QWEN_S,
        _spec("qwen-m-long", "qwen2_vl", 2000, curriculum=400, lr=5e-4, note="larger Qwen (the 3B -> 7B step)", **_M),
        _spec("qwen-s-short", "qwen2_vl", 400, curriculum=200, note="same as qwen-s-long, short budget", **_S),
        _spec("paligemma-s-captions", "paligemma", 1500, recipe="captions+few-qa", note="mostly captions: 1 question in 10", **_S),
        _spec("idefics3-s-long", "idefics3", 3000, note="SmolVLM-style, 16 merged image tokens", **_S),
        _spec("llava-s-mid", "llava", 1000, note="LLaVA-style, mid budget", **_S),
        _spec("llava-mnv2-s-imagenet", "mobilenet_llava", 1500, vision_init="pretrained",
              note="LLaVA with a real pretrained vision tower (ImageNet MobileNetV2); projector + LM trained here", **_S),
        scratch_twin(_QWEN_S),
    ),
    "smoke": (
        _spec("qwen-tiny", "qwen2_vl", 20, curriculum=10, **_TINY),
        _spec("idefics3-tiny", "idefics3", 20, recipe="captions", curriculum=10, **_TINY),
    ),
}


def get_zoo(name: str) -> tuple[ZooSpec, ...]:
    """The zoo called ``name``; an unknown name lists the nearest valid ones."""
    if name not in ZOOS:
        raise ValueError(f"unknown zoo {name!r}; nearest: {difflib.get_close_matches(name, ZOOS, n=3, cutoff=0.0)}")
    return ZOOS[name]


def build_zoo(specs: tuple[ZooSpec, ...], corpus: CorpusSplits, out_dir: str | Path, n_probe: int = 200,
              workers: int = 1) -> list[dict[str, Any]]:
    """Build every member (``build_zoo_member``), in ``workers`` processes of one torch thread each.

    Two one-thread processes on the 2-core machine give about 1.3x the throughput of one two-thread
    process (TOOLCHAIN.md pilot); the costliest members are started first. Summaries in zoo order.
    """
    build = partial(build_zoo_member, corpus=corpus, out_dir=out_dir, n_probe=n_probe, progress=workers <= 1)
    if workers <= 1:
        return [build(spec) for spec in specs]
    order = sorted(range(len(specs)), key=lambda i: -_cost(specs[i]))
    context = multiprocessing.get_context("spawn")  # fork after torch threads start can deadlock
    with ProcessPoolExecutor(min(workers, len(specs)), mp_context=context, initializer=_one_thread) as pool:
        done = dict(zip(order, pool.map(build, [specs[i] for i in order])))
    return [done[i] for i in range(len(specs))]


def _cost(spec: ZooSpec) -> float:
    """Rough relative build cost: steps x width^2 x layers (scratch members only run the probe)."""
    b = spec.backbone
    return (0 if spec.scratch else spec.pretrain.steps) * b.hidden_size**2 * (b.text_layers + b.vision_layers)


def _one_thread() -> None:
    import torch
    torch.set_num_threads(1)


def build_zoo_member(spec: ZooSpec, corpus: CorpusSplits, out_dir: str | Path, n_probe: int = 200,
                     progress: bool = True) -> dict[str, Any]:
    """Make, pretrain, probe (general VQA on held-out) and save ``spec`` under out_dir/<name>.

    The directory holds the checkpoint, its README.md card, history.csv and summary.json, and no wall-clock
    time (policy runs depend on its bytes): the returned summary adds ``build_seconds``.
    Returns the summary (flat: name, family, params, steps, recipe, vqa accuracy overall / by type).
    """
    from vlm4vla.probes import general_vqa_accuracy  # probes sit above backbones; used only here

    start = time.perf_counter()
    backbone = make_backbone(spec.backbone, corpus.train.texts())
    history: list[dict[str, float]] = []
    if not spec.scratch:
        history = pretrain(backbone, corpus.train, dataclasses.replace(spec.pretrain, progress=progress))
    vqa = general_vqa_accuracy(backbone, corpus.heldout, n=n_probe)
    summary = member_summary(spec, backbone, vqa, corpus)
    if not spec.scratch:  # the random-init twin's probe: a few seconds, no checkpoint (it is make_backbone again)
        twin = general_vqa_accuracy(make_backbone(scratch_twin(spec).backbone, corpus.train.texts()), corpus.heldout, n=n_probe)
        summary |= {f"twin_vqa_{k}": v for k, v in twin["overall"].items()}
    summary["build_seconds"] = round(time.perf_counter() - start, 1)
    backbone.card.update({"name": spec.name, "note": spec.note, "corpus": corpus_label(corpus),
                          "general_vqa": _vqa_text(vqa)})
    extra = {HISTORY_FILE: history_csv(history),
             SUMMARY_FILE: json.dumps({k: v for k, v in summary.items() if k != "build_seconds"}, indent=2) + "\n",
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


ZOO_SUMMARY = "artifacts/zoo-summary.json"  # every member's summary in one file that git keeps (finding 1 reads it)


def write_zoo_summary(table: pd.DataFrame, path: str | Path) -> Path:
    """``zoo_table`` as one JSON list (atomically), for readers on machines without the checkpoints."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(table.to_json(orient="records", indent=1) + "\n")
    tmp.replace(path)
    return path


def read_zoo_summary(path: str | Path) -> pd.DataFrame:
    """The table ``write_zoo_summary`` wrote."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the zoo stage (`dvc repro zoo`)")
    return pd.DataFrame(json.loads(path.read_text()))


def zoo_table(out_dir: str | Path, names: list[str] | None = None) -> pd.DataFrame:
    """One row per built member (its summary.json), in zoo order when ``names`` is given."""
    out_dir = Path(out_dir)
    names = names or sorted(p.name for p in out_dir.iterdir() if (p / SUMMARY_FILE).is_file())
    return pd.DataFrame([json.loads((out_dir / n / SUMMARY_FILE).read_text()) for n in names])


def twin_gaps(table: pd.DataFrame) -> pd.DataFrame:
    """Pretrained members against their random-init twins on general VQA (the paper's 'VLM init beats
    from scratch'): accuracies, gap, and whether the pretrained interval lies above the twin's."""
    rows = table[table["steps"] > 0]
    out = pd.DataFrame({"vqa": rows["vqa_accuracy"], "twin_vqa": rows["twin_vqa_accuracy"],
                        "gap": rows["vqa_accuracy"] - rows["twin_vqa_accuracy"],
                        "beats_twin": rows["vqa_ci_low"] > rows["twin_vqa_ci_high"]})
    return out.set_axis(rows["name"]).rename_axis("name")


def zoo_answers(out_dir: str | Path, names: list[str]) -> dict[str, pd.DataFrame]:
    """Each member's held-out VQA answers (question, truth, prediction, correct)."""
    return {n: pd.read_csv(Path(out_dir) / n / ANSWERS_FILE, keep_default_na=False) for n in names}


def zoo_histories(out_dir: str | Path, names: list[str]) -> dict[str, pd.DataFrame]:
    """Each member's pretraining history (empty for scratch members)."""
    return {n: pd.read_csv(Path(out_dir) / n / HISTORY_FILE) for n in names}
