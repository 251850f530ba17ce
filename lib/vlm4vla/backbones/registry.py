"""What a VLM family supplies (``Family``) and the registry of families.

Family files register themselves on import; ``FAMILIES()`` imports them all on first use, so any
entry point (make_backbone, load_backbone, a test) sees the full list without import-order care.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch
from transformers import PretrainedConfig, PreTrainedTokenizerFast

if TYPE_CHECKING:
    from vlm4vla.backbones.base import BackboneConfig, ModuleGroups

FAMILY_MODULES = ("qwen2_vl", "paligemma", "idefics3", "llava", "mobilenet_llava")  # one file each in this package
_REGISTRY: dict[str, "Family"] = {}

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP normalisation (Qwen-VL, LLaVA)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)  # SigLIP normalisation (PaliGemma, Idefics3 / SmolVLM)


def no_token_types(input_ids: torch.Tensor, is_target: torch.Tensor, config: PretrainedConfig) -> dict[str, torch.Tensor]:
    """Families whose forward needs no token-type input."""
    return {}


@dataclass(frozen=True)
class Family:
    """Everything that differs between VLM families; the forward pass does not."""

    name: str
    model_types: tuple[str, ...]  # config.json ``model_type`` values this family loads
    model_class: type
    build_config: Callable[["BackboneConfig", PreTrainedTokenizerFast], PretrainedConfig]
    special_tokens: Mapping[str, Any]  # bos/eos/pad/unk_token + "additional": image, chat tokens
    format_prompt: Callable[[str, int], str]  # (prompt, n_image_tokens) -> text with image tokens
    format_target: Callable[[str], str]  # answer -> text the model must produce (with end token)
    stop_tokens: tuple[str, ...]  # generation stops at any of these
    pixel_inputs: Callable[[torch.Tensor, PretrainedConfig], dict[str, torch.Tensor]]  # normalised (B,3,H,W)
    n_image_tokens: Callable[[PretrainedConfig, int], int]  # (config, image_size) -> tokens per image
    default_image_size: Callable[[PretrainedConfig], int]  # for checkpoints not saved by us
    groups: "ModuleGroups"
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    token_types: Callable[[torch.Tensor, torch.Tensor, PretrainedConfig], dict[str, torch.Tensor]] = no_token_types
    load_classes: Mapping[str, type] = dataclasses.field(default_factory=dict)  # model_type -> class, if not model_class
    # loads real pretrained vision weights into a freshly built model (BackboneConfig.vision_init="pretrained")
    pretrained_vision: Callable[[Any], None] | None = None

    def class_for(self, model_type: str) -> type:
        """The transformers class that loads a checkpoint of ``model_type``."""
        return self.load_classes.get(model_type, self.model_class)

    def stop_ids(self, tokenizer: PreTrainedTokenizerFast) -> list[int]:
        """Token ids that end a generated answer."""
        return [tokenizer.convert_tokens_to_ids(t) for t in self.stop_tokens]


def register_family(family: Family) -> Family:
    """Add a family to the registry (called at import of its file)."""
    _REGISTRY[family.name] = family
    return family


def FAMILIES() -> dict[str, Family]:
    """All registered families by name (imports the family files on first call)."""
    for module in FAMILY_MODULES:
        importlib.import_module(f"vlm4vla.backbones.{module}")
    return dict(_REGISTRY)


def supported_families() -> list[str]:
    """Names of the supported families."""
    return sorted(FAMILIES())


def get_family(name: str) -> Family:
    """The family called ``name``; an unknown name lists the nearest valid ones."""
    families = FAMILIES()
    if name not in families:
        near = difflib.get_close_matches(name, families, n=3, cutoff=0.0)
        raise ValueError(f"unknown backbone family {name!r}; nearest: {near}; supported: {sorted(families)}")
    return families[name]
