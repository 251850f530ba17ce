"""PaliGemma (1 and 2): SigLIP tower, linear projector, Gemma LM; prefix-LM prompt.

The prompt is ``<image>*n <bos> prompt \\n`` (the prefix, attended bidirectionally) and the target
``answer <eos>`` (the suffix, causal), told apart by ``token_type_ids`` (0 prefix, 1 suffix), as in
``PaliGemmaProcessor``. The image tokens come first, one per SigLIP patch (no merging).
"""

from __future__ import annotations

import torch
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PretrainedConfig, PreTrainedTokenizerFast

from vlm4vla.backbones.base import BackboneConfig, ModuleGroups
from vlm4vla.backbones.registry import HALF, Family, register_family

IMAGE, BOS, EOS, PAD = "<image>", "<bos>", "<eos>", "<pad>"


def build_config(cfg: BackboneConfig, tok: PreTrainedTokenizerFast) -> PaliGemmaConfig:
    ids = tok.convert_tokens_to_ids
    text = dict(model_type="gemma", vocab_size=len(tok), hidden_size=cfg.hidden_size,
                intermediate_size=cfg.mlp_ratio * cfg.hidden_size, num_hidden_layers=cfg.text_layers,
                num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads, head_dim=cfg.head_dim,
                max_position_embeddings=4096, bos_token_id=ids(BOS), eos_token_id=ids(EOS), pad_token_id=ids(PAD))
    vision = dict(model_type="siglip_vision_model", hidden_size=cfg.vision_width, num_hidden_layers=cfg.vision_layers,
                  intermediate_size=cfg.mlp_ratio * cfg.vision_width, num_attention_heads=cfg.heads,
                  image_size=cfg.image_size, patch_size=cfg.patch_size)
    return PaliGemmaConfig(text_config=text, vision_config=vision, projection_dim=cfg.hidden_size,
                           image_token_index=ids(IMAGE), bos_token_id=ids(BOS), eos_token_id=ids(EOS),
                           pad_token_id=ids(PAD))


def format_prompt(prompt: str, n_image_tokens: int) -> str:
    return f"{IMAGE * n_image_tokens}{BOS}{prompt}\n"


def format_target(target: str) -> str:
    return f"{target}{EOS}"


def pixel_inputs(x: torch.Tensor, config: PretrainedConfig) -> dict[str, torch.Tensor]:
    return {"pixel_values": x}  # (B, 3, H, W)


def n_image_tokens(config: PretrainedConfig, image_size: int) -> int:
    return (image_size // config.vision_config.patch_size) ** 2


def token_types(input_ids: torch.Tensor, is_target: torch.Tensor, config: PretrainedConfig) -> dict[str, torch.Tensor]:
    """token_type_ids: 0 on the bidirectional prefix (image + prompt + suffix), 1 on the target."""
    return {"token_type_ids": is_target.long()}


FAMILY = register_family(Family(
    name="paligemma",
    model_types=("paligemma",),
    model_class=PaliGemmaForConditionalGeneration,
    build_config=build_config,
    special_tokens={"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "additional": (IMAGE,)},
    format_prompt=format_prompt,
    format_target=format_target,
    stop_tokens=(EOS,),
    pixel_inputs=pixel_inputs,
    n_image_tokens=n_image_tokens,
    default_image_size=lambda config: int(config.vision_config.image_size),
    token_types=token_types,
    image_mean=HALF,
    image_std=HALF,
    groups=ModuleGroups(vision=(r"^model\.vision_tower\.",), projector=(r"^model\.multi_modal_projector\.",),
                        word_embeddings=(r"embed_tokens",), language_model=(r"^model\.language_model\.",),
                        lm_head=(r"^lm_head\.",)),
))
