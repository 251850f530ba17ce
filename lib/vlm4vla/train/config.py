"""Run configuration: small frozen dataclasses per concern, composed into ``RunConfig``.

``BackboneSpec`` (which VLM), ``HeadConfig`` (adapter head, ``vlm4vla.adapter.head``),
``DataConfig`` (``vlm4vla.data.chunks``), ``TrainConfig`` (optimisation) -> ``RunConfig``.
Evaluation settings stay with the harness (``vlm4vla.evaluate``): training never imports it.
Variants are presets or ``dataclasses.replace``; ``make_run_config`` parses flat notebook parameters.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from vlm4vla.adapter.freezing import PRESETS as FREEZE_PRESETS
from vlm4vla.adapter.head import HeadConfig
from vlm4vla.data.chunks import DataConfig

SCRATCH = "scratch"
# Named architectures for "scratch:<family>:<size>" (random init). "tiny" is the pilot's size
# (hidden 192, 4 + 4 layers, patch 8, 64 px; TOOLCHAIN.md); "test" is for unit tests only.
SCRATCH_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {},
    "test": dict(hidden_size=32, heads=2, text_layers=1, vision_layers=1, image_size=32,
                 patch_size=8, vocab_size=300),
}
PRECISIONS = ("auto", "no", "bf16")
INITS = ("pretrained", "scratch")  # scratch: the same architecture, random init (paper's control)


def _fail(cls: str, name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{cls}.{name}={value!r} is invalid: allowed {allowed}")


@dataclass(frozen=True)
class BackboneSpec:
    """Which VLM: a saved backbone folder (e.g. ``artifacts/zoo/<name>``) or ``scratch:<family>:<size>``.

    init: "pretrained" keeps the folder's weights; "scratch" keeps its architecture and tokenizer but
    re-initialises every weight (the paper's "architecture, random init" row). ``scratch:`` sources
    are random-init whatever ``init`` says.
    """

    source: str = "scratch:qwen2_vl:tiny"
    init: str = "pretrained"

    def __post_init__(self) -> None:
        if self.init not in INITS:
            _fail("BackboneSpec", "init", self.init, str(INITS))
        if self.is_scratch:
            parts = self.source.split(":")
            if len(parts) != 3 or parts[2] not in SCRATCH_SIZES:
                _fail("BackboneSpec", "source", self.source, f"'scratch:<family>:<size>' with size in {sorted(SCRATCH_SIZES)}")
        elif not self.source:
            _fail("BackboneSpec", "source", self.source, "a backbone folder or 'scratch:<family>:<size>'")

    @property
    def is_scratch(self) -> bool:
        """True for a randomly initialised architecture."""
        return self.source.startswith(SCRATCH + ":")

    @property
    def family_and_size(self) -> tuple[str, str]:
        """(family, size) of a scratch spec."""
        _, family, size = self.source.split(":")
        return family, size


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation. Paper: AdamW, weight decay 0, constant LR after a short warm-up, grad-clip 1.0,
    bf16; lr 2e-5 (Qwen) / 5e-5 (Kosmos, PaliGemma) for pretrained 2-8B VLMs. The pilot's tiny
    random-init models used 3e-4 (TOOLCHAIN.md)."""

    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-4
    warmup_steps: int = 50  # "short warm-up" (paper gives no number): linear from 0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    mixed_precision: str = "auto"  # auto: bf16 on CUDA, none on CPU
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    max_loss: float = 1e3  # Huber on [-1, 1] targets stays below ~2: far above is divergence
    threads: int = 0  # CPU threads for torch; 0 leaves torch's default

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                _fail("TrainConfig", name, getattr(self, name), ">= 1")
        if not self.lr > 0:
            _fail("TrainConfig", "lr", self.lr, "> 0")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.grad_clip <= 0 or self.threads < 0:
            _fail("TrainConfig", "warmup_steps/weight_decay/grad_clip/threads",
                  (self.warmup_steps, self.weight_decay, self.grad_clip, self.threads), ">= 0 (grad_clip > 0)")
        if self.mixed_precision not in PRECISIONS:
            _fail("TrainConfig", "mixed_precision", self.mixed_precision, str(PRECISIONS))


@dataclass(frozen=True)
class RunConfig:
    """One VLA training run: backbone, head, data, optimisation, freezing preset and seed."""

    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    head: HeadConfig = field(default_factory=HeadConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    freeze: str = "full"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.freeze not in FREEZE_PRESETS:
            near = difflib.get_close_matches(self.freeze, FREEZE_PRESETS, n=3, cutoff=0.0)
            _fail("RunConfig", "freeze", self.freeze, f"{sorted(FREEZE_PRESETS)} (nearest: {near})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able nested dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        """Inverse of ``to_dict``."""
        parts = {"backbone": BackboneSpec, "head": HeadConfig, "data": DataConfig, "train": TrainConfig}
        built = {k: _build(t, data[k]) for k, t in parts.items() if k in data}
        return cls(**built, **{k: data[k] for k in ("freeze", "seed") if k in data})


def _build(cls: type, values: Mapping[str, Any]) -> Any:
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# Flat notebook / params.yaml keys -> (section, field). "chunk" is the paper's N.
_ALIASES = {"chunk": ("head", "chunk_size"), "backbone": ("backbone", "source"), "init": ("backbone", "init"),
            "demos_dir": ("data", "demos_dir")}


def _flat_keys() -> dict[str, tuple[str, str]]:
    keys = {f.name: ("train", f.name) for f in fields(TrainConfig)}
    keys.update({f.name: ("head", f.name) for f in fields(HeadConfig)})
    keys.update({f.name: ("data", f.name) for f in fields(DataConfig)})
    keys.update({"freeze": ("", "freeze"), "seed": ("", "seed")})
    keys.update(_ALIASES)
    return keys


def make_run_config(params: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
    """A RunConfig from flat parameters such as ``{"backbone": ..., "steps": 300, "chunk": 4}``.

    Unknown keys answer with the nearest valid ones. Parsing stays here, at the edge.
    """
    keys, cfg = _flat_keys(), base or RunConfig()
    updates: dict[str, dict[str, Any]] = {"": {}, "backbone": {}, "head": {}, "data": {}, "train": {}}
    for key, value in params.items():
        if key not in keys:
            near = difflib.get_close_matches(key, keys, n=3, cutoff=0.0)
            raise ValueError(f"unknown run parameter {key!r}; nearest: {near}; valid: {sorted(keys)}")
        section, name = keys[key]
        updates[section][name] = tuple(value) if isinstance(value, list) else value
    sections = {s: replace(getattr(cfg, s), **v) for s, v in updates.items() if s and v}
    return replace(cfg, **sections, **updates[""])



def resolve_paths(cfg: RunConfig, root: Path) -> RunConfig:
    """Relative backbone folder and demos_dir made absolute against ``root`` (the repository root)."""
    def absolute(path: str) -> str:
        return path if Path(path).is_absolute() else str(Path(root) / path)

    backbone = cfg.backbone if cfg.backbone.is_scratch else replace(cfg.backbone, source=absolute(cfg.backbone.source))
    return replace(cfg, backbone=backbone, data=replace(cfg.data, demos_dir=absolute(cfg.data.demos_dir)))
