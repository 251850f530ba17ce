"""All robot probes of one backbone as one flat dict of ``probe_*`` columns (for a zoo summary.json)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vlm4vla.backbones.base import Backbone
from vlm4vla.data.demos import DemoStore
from vlm4vla.probes.embodied import EmbodiedProbeConfig, embodied_probes
from vlm4vla.probes.linear import LinearProbeConfig, linear_probes

PREFIX = "probe_"
_SKIP = ("answers",)  # per-item tables stay out of the flat summary


@dataclass(frozen=True)
class ProbeConfig:
    """The embodied and linear probe settings used for a zoo member."""

    embodied: EmbodiedProbeConfig = field(default_factory=EmbodiedProbeConfig)
    linear: LinearProbeConfig = field(default_factory=LinearProbeConfig)
    random_twin: bool = True  # the random-init reference of the linear probes (one extra feature pass)

    def __post_init__(self) -> None:
        if not isinstance(self.embodied, EmbodiedProbeConfig) or not isinstance(self.linear, LinearProbeConfig):
            raise TypeError("ProbeConfig.embodied / .linear must be EmbodiedProbeConfig / LinearProbeConfig")


def flatten_probes(embodied: dict[str, dict], linear: dict[str, dict]) -> dict[str, Any]:
    """``{probe_<name>: score, probe_<name>_<field>: ...}``; linear targets as ``probe_linear_<t>_r2``."""
    out: dict[str, Any] = {}
    named = {**embodied, **{f"linear_{t}_r2": r for t, r in linear.items()}}
    for name, result in named.items():
        out[PREFIX + name] = result["score"]
        for key, value in result.items():
            if key != "score" and key not in _SKIP:
                out[f"{PREFIX}{name}_{key}"] = value
    return out


def robot_probe_summary(backbone: Backbone, store: DemoStore, cfg: ProbeConfig = ProbeConfig()) -> dict[str, Any]:
    """Embodied + linear probes of ``backbone`` on ``store``, flat (merge into the zoo summary)."""
    backbone.eval()
    return flatten_probes(embodied_probes(backbone, store, cfg.embodied),
                          linear_probes(backbone, store, cfg.linear, random_twin=cfg.random_twin))
