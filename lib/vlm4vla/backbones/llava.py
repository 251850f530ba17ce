"""LLaVA-1.5: CLIP vision tower (features of the second-to-last layer, CLS dropped), MLP projector,
Llama LM. Prompt ``USER: <image>*n\\nprompt ASSISTANT:`` then `` answer</s>``, one image token per
patch (no merging), as LlavaProcessor expands them.
"""

from __future__ import annotations

import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration, PretrainedConfig, PreTrainedTokenizerFast

from vlm4vla.backbones.base import BackboneConfig, ModuleGroups
from vlm4vla.backbones.registry import Family, register_family

IMAGE, BOS, EOS, PAD, UNK = "<image>", "<s>", "</s>", "<pad>", "<unk>"


def build_config(cfg: BackboneConfig, tok: PreTrainedTokenizerFast) -> LlavaConfig:
    ids = tok.convert_tokens_to_ids
    text = dict(model_type="llama", vocab_size=len(tok), hidden_size=cfg.hidden_size,
                intermediate_size=cfg.mlp_ratio * cfg.hidden_size, num_hidden_layers=cfg.text_layers,
                num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads, max_position_embeddings=4096,
                bos_token_id=ids(BOS), eos_token_id=ids(EOS), pad_token_id=ids(PAD))
    vision = dict(model_type="clip_vision_model", hidden_size=cfg.vision_width, num_hidden_layers=cfg.vision_layers,
                  intermediate_size=cfg.mlp_ratio * cfg.vision_width, num_attention_heads=cfg.heads,
                  image_size=cfg.image_size, patch_size=cfg.patch_size, projection_dim=cfg.vision_width)
    n = (cfg.image_size // cfg.patch_size) ** 2
    return LlavaConfig(text_config=text, vision_config=vision, image_token_index=ids(IMAGE), image_seq_length=n,
                       vision_feature_layer=-2, vision_feature_select_strategy="default", pad_token_id=ids(PAD))


def format_prompt(prompt: str, n_image_tokens: int) -> str:
    return f"{BOS}USER: {IMAGE * n_image_tokens}\n{prompt} ASSISTANT:"


def format_target(target: str) -> str:
    return f" {target}{EOS}"


def pixel_inputs(x: torch.Tensor, config: PretrainedConfig) -> dict[str, torch.Tensor]:
    return {"pixel_values": x}  # (B, 3, H, W)


def n_image_tokens(config: PretrainedConfig, image_size: int) -> int:
    n = (image_size // config.vision_config.patch_size) ** 2
    return n + (config.vision_feature_select_strategy == "full")  # "full" keeps the CLS feature


FAMILY = register_family(Family(
    name="llava",
    model_types=("llava",),
    model_class=LlavaForConditionalGeneration,
    build_config=build_config,
    special_tokens={"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK, "additional": (IMAGE,)},
    format_prompt=format_prompt,
    format_target=format_target,
    stop_tokens=(EOS,),
    pixel_inputs=pixel_inputs,
    n_image_tokens=n_image_tokens,
    default_image_size=lambda config: int(config.vision_config.image_size),
    groups=ModuleGroups(vision=(r"^model\.vision_tower\.",), projector=(r"^model\.multi_modal_projector\.",),
                        word_embeddings=(r"embed_tokens",), language_model=(r"^model\.language_model\.",),
                        lm_head=(r"^lm_head\.",)),
))
