"""Idefics3 / SmolVLM: SigLIP tower, pixel-shuffle connector (scale 2: 4x fewer tokens), Llama LM.

Prompt as SmolVLM's chat template with one global image and no image splitting (the 64 px input
is a single tile): ``<|im_start|>User:<fake_token_around_image><global-img><image>*n
<fake_token_around_image>prompt<end_of_utterance>\\nAssistant:`` then `` answer<end_of_utterance>``.
"""

from __future__ import annotations

import torch
from transformers import (Idefics3Config, Idefics3ForConditionalGeneration, PretrainedConfig, PreTrainedTokenizerFast,
                          SmolVLMForConditionalGeneration)

from vlm4vla.backbones.base import BackboneConfig, ModuleGroups
from vlm4vla.backbones.registry import HALF, Family, register_family

IMAGE, FAKE, GLOBAL = "<image>", "<fake_token_around_image>", "<global-img>"
BOS, EOU, PAD = "<|im_start|>", "<end_of_utterance>", "<|endoftext|>"
SCALE = 2  # pixel-shuffle factor of Idefics3 / SmolVLM


def build_config(cfg: BackboneConfig, tok: PreTrainedTokenizerFast) -> Idefics3Config:
    ids = tok.convert_tokens_to_ids
    text = dict(model_type="llama", vocab_size=len(tok), hidden_size=cfg.hidden_size,
                intermediate_size=cfg.mlp_ratio * cfg.hidden_size, num_hidden_layers=cfg.text_layers,
                num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads, max_position_embeddings=4096,
                bos_token_id=ids(BOS), eos_token_id=ids(EOU), pad_token_id=ids(PAD))
    vision = dict(hidden_size=cfg.vision_width, num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.heads,
                  intermediate_size=cfg.mlp_ratio * cfg.vision_width, image_size=cfg.image_size, patch_size=cfg.patch_size)
    return Idefics3Config(text_config=text, vision_config=vision, scale_factor=SCALE, image_token_id=ids(IMAGE),
                          pad_token_id=ids(PAD), tie_word_embeddings=False)


def format_prompt(prompt: str, n_image_tokens: int) -> str:
    return f"{BOS}User:{FAKE}{GLOBAL}{IMAGE * n_image_tokens}{FAKE}{prompt}{EOU}\nAssistant:"


def format_target(target: str) -> str:
    return f" {target}{EOU}"


def pixel_inputs(x: torch.Tensor, config: PretrainedConfig) -> dict[str, torch.Tensor]:
    return {"pixel_values": x[:, None]}  # (B, n_images=1, 3, H, W)


def n_image_tokens(config: PretrainedConfig, image_size: int) -> int:
    return (image_size // config.vision_config.patch_size) ** 2 // config.scale_factor**2


FAMILY = register_family(Family(
    name="idefics3",
    model_types=("idefics3", "smolvlm"),
    load_classes={"smolvlm": SmolVLMForConditionalGeneration},  # SmolVLM2: Idefics3 layout, own class
    model_class=Idefics3ForConditionalGeneration,
    build_config=build_config,
    special_tokens={"bos_token": BOS, "eos_token": EOU, "pad_token": PAD, "additional": (IMAGE, FAKE, GLOBAL)},
    format_prompt=format_prompt,
    format_target=format_target,
    stop_tokens=(EOU,),
    pixel_inputs=pixel_inputs,
    n_image_tokens=n_image_tokens,
    default_image_size=lambda config: int(config.vision_config.image_size),
    image_mean=HALF,
    image_std=HALF,
    groups=ModuleGroups(vision=(r"^model\.vision_model\.",), projector=(r"^model\.connector\.",),
                        word_embeddings=(r"embed_tokens",), language_model=(r"^model\.text_model\.",),
                        lm_head=(r"^lm_head\.",)),
))
