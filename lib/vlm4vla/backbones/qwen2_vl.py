"""Qwen2-VL / Qwen2.5-VL (the paper's main backbones): ChatML prompt, patches merged 2x2, M-RoPE.

Built from scratch as Qwen2.5-VL; ``load_backbone`` also reads Qwen2-VL checkpoints. Qwen2VLProcessor
cannot be built without torchvision, so this file patchifies pixels itself (the same patch order as
``Qwen2VLImageProcessor``) and writes ``<|image_pad|>`` tokens itself. ``mm_token_type_ids`` is always
passed: without it Qwen2.5-VL silently skips its multimodal rotary positions (TOOLCHAIN.md).
"""

from __future__ import annotations

import torch
from transformers import (PretrainedConfig, PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                          Qwen2VLForConditionalGeneration)

from vlm4vla.backbones.base import BackboneConfig, ModuleGroups
from vlm4vla.backbones.registry import Family, register_family

IMAGE, VIDEO = "<|image_pad|>", "<|video_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SYSTEM = "You are a helpful assistant."  # Qwen2.5-VL's default system message
TEMPORAL_PATCH = 2  # Qwen-VL stacks 2 frames per patch; a still image is repeated
MERGE = 2  # 2x2 patches merged into one LM token


def mrope_section(head_dim: int) -> list[int]:
    """(temporal, height, width) rotary sections summing to head_dim/2 (Qwen's 16/24/24 of 64)."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def build_config(cfg: BackboneConfig, tok: PreTrainedTokenizerFast) -> Qwen2_5_VLConfig:
    ids = tok.convert_tokens_to_ids
    text = dict(vocab_size=len(tok), hidden_size=cfg.hidden_size, intermediate_size=cfg.mlp_ratio * cfg.hidden_size,
                num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
                max_position_embeddings=4096, tie_word_embeddings=True, bos_token_id=ids(ENDOFTEXT),
                eos_token_id=ids(IM_END), pad_token_id=ids(ENDOFTEXT),
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section(cfg.head_dim)})
    vision = dict(depth=cfg.vision_layers, hidden_size=cfg.vision_width, intermediate_size=cfg.mlp_ratio * cfg.vision_width,
                  num_heads=cfg.heads, patch_size=cfg.patch_size, spatial_merge_size=MERGE, temporal_patch_size=TEMPORAL_PATCH,
                  window_size=cfg.image_size, out_hidden_size=cfg.hidden_size, fullatt_block_indexes=[cfg.vision_layers - 1])
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids(IMAGE), video_token_id=ids(VIDEO),
                            vision_start_token_id=ids(VISION_START), vision_end_token_id=ids(VISION_END),
                            bos_token_id=ids(ENDOFTEXT), eos_token_id=ids(IM_END), pad_token_id=ids(ENDOFTEXT),
                            tie_word_embeddings=True)


def format_prompt(prompt: str, n_image_tokens: int) -> str:
    return (f"{IM_START}system\n{SYSTEM}{IM_END}\n{IM_START}user\n{VISION_START}{IMAGE * n_image_tokens}{VISION_END}"
            f"{prompt}{IM_END}\n{IM_START}assistant\n")


def format_target(target: str) -> str:
    return f"{target}{IM_END}"


def pixel_inputs(x: torch.Tensor, config: PretrainedConfig) -> dict[str, torch.Tensor]:
    """(B, 3, H, W) normalised -> flattened patches (B*gh*gw, 3*T*p*p) in Qwen's merge order."""
    v = config.vision_config
    b, c, h, w = x.shape
    p, m, t = v.patch_size, v.spatial_merge_size, v.temporal_patch_size
    gh, gw = h // p, w // p
    x = x[:, None, None].expand(b, 1, t, c, h, w)  # (B, grid_t=1, T, C, H, W)
    x = x.reshape(b, 1, t, c, gh // m, m, p, gw // m, m, p).permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)
    patches = x.reshape(b * gh * gw, c * t * p * p)
    grid = torch.tensor([[1, gh, gw]] * b, device=x.device)
    return {"pixel_values": patches, "image_grid_thw": grid}


def n_image_tokens(config: PretrainedConfig, image_size: int) -> int:
    v = config.vision_config
    return (image_size // v.patch_size) ** 2 // v.spatial_merge_size**2


def token_types(input_ids: torch.Tensor, is_target: torch.Tensor, config: PretrainedConfig) -> dict[str, torch.Tensor]:
    """mm_token_type_ids: 1 on image tokens, 0 on text (2 would be video)."""
    return {"mm_token_type_ids": (input_ids == config.image_token_id).int()}


def default_image_size(config: PretrainedConfig) -> int:
    # Qwen-VL takes any size; 224 px (the paper's input, 16x16 patches of 14) for real checkpoints.
    return 16 * config.vision_config.patch_size


FAMILY = register_family(Family(
    name="qwen2_vl",
    model_types=("qwen2_5_vl", "qwen2_vl"),
    model_class=Qwen2_5_VLForConditionalGeneration,
    load_classes={"qwen2_vl": Qwen2VLForConditionalGeneration},  # Qwen2-VL: other vision blocks, same names
    build_config=build_config,
    special_tokens={"eos_token": IM_END, "pad_token": ENDOFTEXT,
                    "additional": (ENDOFTEXT, IM_START, IM_END, VISION_START, VISION_END, IMAGE, VIDEO)},
    format_prompt=format_prompt,
    format_target=format_target,
    stop_tokens=(IM_END, ENDOFTEXT),
    pixel_inputs=pixel_inputs,
    n_image_tokens=n_image_tokens,
    default_image_size=default_image_size,
    token_types=token_types,
    groups=ModuleGroups(vision=(r"^model\.visual\.(?!merger)",), projector=(r"^model\.visual\.merger\.",),
                        word_embeddings=(r"embed_tokens",), language_model=(r"^model\.language_model\.",),
                        lm_head=(r"^lm_head\.",)),
))
