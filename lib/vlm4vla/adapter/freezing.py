"""Declarative freezing: a preset names the module groups to freeze; a filter over parameter names.

Groups are the backbone's own (``vision``, ``projector``, ``word_embeddings``, ``language_model``,
``lm_head``; regexes in ``backbone.groups``), ``other`` for backbone parameters no pattern claims,
and ``new`` for what the adapter adds (ActionQuery + head). ``backbone`` stands for every backbone
group. The LM head is frozen in every preset: the action forward never calls it, and freezing it
keeps AdamW from holding state for a vocab x d matrix (tied to the word embeddings in some
families, in which case the word-embedding group decides).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import pandas as pd
from torch import nn

from vlm4vla.backbones.base import ModuleGroups

BACKBONE_GROUPS = (*ModuleGroups.NAMES, "other")
GROUPS = (*BACKBONE_GROUPS, "new")
_PREFIX = "backbone.model."

# Preset -> groups frozen. "full" is the paper's default (everything fine-tuned, STUDY.md); the
# others are its modality ablations (finding 3) plus the linear-probe-like "head_only".
PRESETS: dict[str, tuple[str, ...]] = {
    "full": ("lm_head",),
    "freeze_vision": ("vision", "lm_head"),
    "freeze_word_embeddings": ("word_embeddings", "lm_head"),
    "freeze_language_model": ("language_model", "lm_head"),
    "head_only": ("backbone",),
}


@dataclass(frozen=True)
class FreezeSpec:
    """Which groups are frozen. ``name`` is the preset it came from (for tables and reports)."""

    frozen: tuple[str, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        bad = [g for g in self.frozen if g not in (*GROUPS, "backbone")]
        if bad:
            raise ValueError(f"FreezeSpec.frozen has unknown groups {bad}; allowed: {[*GROUPS, 'backbone']}")
        if "new" in self.frozen:
            raise ValueError("FreezeSpec.frozen may not contain 'new': the ActionQuery and head always train")

    def frozen_groups(self) -> frozenset[str]:
        """The frozen groups with ``backbone`` expanded."""
        groups = set(self.frozen)
        if "backbone" in groups:
            groups = (groups - {"backbone"}) | set(BACKBONE_GROUPS)
        return frozenset(groups)


def freeze_preset(name: str) -> FreezeSpec:
    """The FreezeSpec of a preset; an unknown name answers with the nearest valid ones."""
    if name not in PRESETS:
        near = difflib.get_close_matches(name, PRESETS, n=3, cutoff=0.0)
        raise ValueError(f"unknown freeze preset {name!r}; nearest: {near}; presets: {sorted(PRESETS)}")
    return FreezeSpec(PRESETS[name], name)


def group_of(adapter: nn.Module, name: str) -> str:
    """The module group of an adapter parameter name."""
    if not name.startswith(_PREFIX):
        return "new"
    return adapter.backbone.groups.group_of(name[len(_PREFIX):]) or "other"


def apply_freezing(adapter: nn.Module, spec: FreezeSpec | str) -> pd.DataFrame:
    """Set ``requires_grad`` by group and return the frozen / trainable table (see ``freezing_table``)."""
    spec = freeze_preset(spec) if isinstance(spec, str) else spec
    frozen = spec.frozen_groups()
    for name, param in adapter.named_parameters():
        param.requires_grad_(group_of(adapter, name) not in frozen)
    return freezing_table(adapter)


def freezing_table(adapter: nn.Module) -> pd.DataFrame:
    """Per group: frozen and trainable parameter counts and the trainable share (tied weights once)."""
    rows = {g: {"frozen": 0, "trainable": 0} for g in GROUPS}
    for name, param in adapter.named_parameters():
        rows[group_of(adapter, name)]["trainable" if param.requires_grad else "frozen"] += param.numel()
    table = pd.DataFrame.from_dict(rows, orient="index")
    table = table[(table.frozen + table.trainable) > 0]
    table.loc["total"] = table.sum()
    table["trainable_share"] = table.trainable / (table.frozen + table.trainable)
    table.index.name = "group"
    return table


def trainable_names(adapter: nn.Module) -> list[str]:
    """Names of parameters that will be updated."""
    return [n for n, p in adapter.named_parameters() if p.requires_grad]
