"""The backbone contract: what the VLM4VLA adapter needs from any Hugging Face VLM.

A family file (``qwen2_vl.py``, ``paligemma.py``, ...) supplies only what differs between families
(a ``Family``): the transformers config/class, how its prompt is chat-formatted, where its image
tokens go, how pixels become its vision inputs, and which parameter names belong to the vision
encoder, projector, word embeddings, language model and LM head. There is exactly one forward pass
for every family: ``Backbone.last_hidden_state``; ``lm_loss`` and ``generate`` reuse it.

CONTRACT:

    ModuleGroups(vision, projector, word_embeddings, language_model, lm_head)
        # regex patterns (``re.search``) over ``backbone.model.named_parameters()`` names
        .group_of(name) -> str | None ; .counts(model) -> dict[group, n_params]

    class Backbone(torch.nn.Module):
        family: str; model: PreTrainedModel (the family's *ForConditionalGeneration class itself)
        tokenizer: PreTrainedTokenizerFast; hidden_size: int; image_size: int; groups: ModuleGroups
        card: dict (model-card facts: corpus, steps, general VQA ... written by ``save``)
        encode(images uint8 (B,H,W,3), prompts, targets=None, suffix="") -> dict[str, Tensor]
            # [image tokens][chat-formatted prompt][suffix] (+ [target][end] with ``labels``; every
            # non-target position is -100). LEFT padded, so position -1 is the last suffix/prompt
            # token of every row (the ActionQuery position when suffix is the query token).
            # Holds every key the model's forward needs (Qwen: mm_token_type_ids, image_grid_thw).
        last_hidden_state(inputs) -> Tensor (B, T, D)    # the one forward pass (final-norm output)
        lm_loss(inputs) -> Tensor ()                     # mean next-token CE over ``labels`` != -100
        generate(images, prompts, max_new_tokens=4) -> list[str]   # greedy, for VQA probes
        add_special_token(token) -> int                  # e.g. the ActionQuery token; resizes embeddings
        save(path, extra_files=None) -> Path             # safetensors + tokenizer + vlm4vla.json +
                                                         # README.md card (+ extra text files), atomic
        helpers: pixel_inputs(images) -> dict, logits(hidden) -> (..., V), n_image_tokens: int,
                 n_parameters() -> int, device, spec: Family (the family's hooks)
    make_backbone(BackboneConfig, texts=None) -> Backbone   # random init ("from scratch"); BPE
                                                           # tokenizer trained on texts + template;
                                                           # vision_init="pretrained": the family's real
                                                           # vision weights (mobilenet_llava: ImageNet)
    load_backbone(path) -> Backbone                        # a local HF-format directory (ours, or a
                                                           # real Qwen2/2.5-VL, PaliGemma, Idefics3,
                                                           # SmolVLM, LLaVA checkpoint, by model_type)
    action_prompt(instruction) -> str                      # the paper's "What action should the
                                                           # robotic arm take to {instruction}?"
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from vlm4vla.backbones.registry import FAMILIES, Family, get_family, supported_families
from vlm4vla.backbones.tokenizer import all_special_tokens, train_tokenizer

IGNORE_INDEX = -100  # label value ignored by the LM loss (the transformers convention)
META_FILE = "vlm4vla.json"  # what a checkpoint needs beyond the HF files (family, image size, card)
ACTION_PROMPT = "What action should the robotic arm take to {instruction}?"  # paper's Qwen wording


def action_prompt(instruction: str) -> str:
    """The paper's VLA prompt for an instruction (STUDY.md, "The adapter")."""
    return ACTION_PROMPT.format(instruction=instruction.rstrip(".? "))


@dataclass(frozen=True)
class ModuleGroups:
    """Regex patterns (``re.search``) over parameter names, one tuple per part of the VLM."""

    vision: tuple[str, ...]
    projector: tuple[str, ...]
    word_embeddings: tuple[str, ...]
    language_model: tuple[str, ...]
    lm_head: tuple[str, ...]

    NAMES = ("vision", "projector", "word_embeddings", "language_model", "lm_head")

    def group_of(self, name: str) -> str | None:
        """The first group whose pattern matches ``name`` (in NAMES order), else None."""
        for group in self.NAMES:
            if any(re.search(p, name) for p in getattr(self, group)):
                return group
        return None

    def counts(self, model: torch.nn.Module) -> dict[str, int]:
        """Parameters per group (plus ``other`` for unmatched ones; tied weights counted once)."""
        out = dict.fromkeys((*self.NAMES, "other"), 0)
        for name, p in model.named_parameters():
            out[self.group_of(name) or "other"] += p.numel()
        return out


@dataclass(frozen=True)
class BackboneConfig:
    """Architecture of a backbone built from scratch (tiny defaults: hidden 192, 4+4 layers, 64 px)."""

    family: str = "qwen2_vl"
    hidden_size: int = 192
    text_layers: int = 4
    vision_layers: int = 4
    heads: int = 4
    vision_hidden_size: int = 0  # 0 = same as hidden_size
    mlp_ratio: int = 4
    image_size: int = 64
    patch_size: int = 8
    vocab_size: int = 1024  # BPE vocabulary trained here (special tokens added on top)
    vision_init: str = "random"  # "pretrained": the family's real vision weights (mobilenet_llava: ImageNet)
    seed: int = 0

    def __post_init__(self) -> None:
        family = get_family(self.family)  # unknown family -> nearest valid names
        _check(self.vision_init in ("random", "pretrained"), "vision_init", self.vision_init, "'random' or 'pretrained'")
        _check(self.vision_init == "random" or family.pretrained_vision is not None, "vision_init", self.vision_init,
               f"'random' for family {self.family!r} (no pretrained vision weights on offer)")
        for name in ("hidden_size", "text_layers", "vision_layers", "heads", "mlp_ratio", "patch_size"):
            _check(getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        _check(self.hidden_size % self.heads == 0, "hidden_size", self.hidden_size, f"a multiple of heads={self.heads}")
        _check((self.hidden_size // self.heads) % 4 == 0, "heads", self.heads, "with head_dim a multiple of 4 (rotary sections)")
        _check(self.vision_width % self.heads == 0, "vision_hidden_size", self.vision_hidden_size, f"a multiple of heads={self.heads}")
        _check(self.image_size % (2 * self.patch_size) == 0, "image_size", self.image_size, f"a multiple of 2*patch_size={2 * self.patch_size}")
        _check(self.vocab_size >= 300, "vocab_size", self.vocab_size, ">= 300 (256 bytes + merges)")

    @property
    def vision_width(self) -> int:
        """Hidden width of the vision encoder."""
        return self.vision_hidden_size or self.hidden_size

    @property
    def head_dim(self) -> int:
        """Width of one attention head in the language model."""
        return self.hidden_size // self.heads


@contextlib.contextmanager
def _no_progress_bars():
    """transformers' per-shard progress bars off (they flood notebook and test logs), then restored."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"BackboneConfig.{name}={value!r} is invalid: must be {allowed}")


class Backbone(torch.nn.Module):
    """A Hugging Face VLM behind the one contract (see module docstring)."""

    def __init__(self, family: Family, model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast,
                 image_size: int, card: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.spec = family
        self.family = family.name
        self.model = model
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.groups = family.groups
        self.card: dict[str, Any] = dict(card or {})
        self.hidden_size = int(model.config.get_text_config().hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def n_image_tokens(self) -> int:
        """Number of image tokens (= visual features) one image occupies in the sequence."""
        return self.spec.n_image_tokens(self.model.config, self.image_size)

    # ---- inputs -------------------------------------------------------------------------------
    def pixel_inputs(self, images: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 (B, H, W, 3) -> the family's vision inputs (resized, normalised, patchified)."""
        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        x = x.to(self.device).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W) in [0, 1]
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False)
        mean = torch.tensor(self.spec.image_mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.image_std, device=x.device).view(1, 3, 1, 1)
        out = self.spec.pixel_inputs((x - mean) / std, self.model.config)
        return {k: v.to(self.model.dtype) if v.is_floating_point() else v for k, v in out.items()}  # bf16 checkpoints

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _row(self, prompt: str, target: str | None, suffix: str) -> tuple[list[int], list[int]]:
        ids = self._ids(self.spec.format_prompt(prompt, self.n_image_tokens) + suffix)
        labels = [IGNORE_INDEX] * len(ids)
        if target is not None:
            tgt = self._ids(self.spec.format_target(target))
            ids, labels = ids + tgt, labels + tgt
        return ids, labels

    def encode(self, images: np.ndarray | torch.Tensor, prompts: Sequence[str],
               targets: Sequence[str] | None = None, suffix: str = "") -> dict[str, torch.Tensor]:
        """Batched, left-padded model inputs (see module docstring)."""
        if len(images) != len(prompts) or (targets is not None and len(targets) != len(prompts)):
            raise ValueError(f"batch sizes differ: {len(images)} images, {len(prompts)} prompts, "
                             f"{None if targets is None else len(targets)} targets")
        rows = [self._row(p, None if targets is None else targets[i], suffix) for i, p in enumerate(prompts)]
        width = max(len(ids) for ids, _ in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(i)) + i for i, _ in rows])  # (B, T)
        labels = torch.tensor([[IGNORE_INDEX] * (width - len(l)) + l for _, l in rows])
        mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i, _ in rows])
        inputs = {"input_ids": ids, "attention_mask": mask}
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs.update(self.pixel_inputs(images))
        inputs.update(self._token_types(inputs["input_ids"], (labels != IGNORE_INDEX).to(self.device)))
        if targets is not None:
            inputs["labels"] = labels.to(self.device)
        return inputs

    def _token_types(self, input_ids: torch.Tensor, is_target: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.spec.token_types(input_ids, is_target, self.model.config)

    # ---- the one forward pass ------------------------------------------------------------------
    def last_hidden_state(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Final-norm hidden states of the language model, (B, T, D)."""
        kwargs = {k: v for k, v in inputs.items() if k != "labels"}
        return self.model.model(**kwargs, use_cache=False).last_hidden_state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM-head logits for hidden states (..., D) -> (..., V), with the family's soft-capping."""
        logits = self.model.lm_head(hidden)
        cap = getattr(self.model.config.get_text_config(), "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def lm_loss(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mean next-token cross-entropy over positions whose label is not -100."""
        hidden = self.last_hidden_state(inputs)[:, :-1]  # (B, T-1, D) predicts token t+1
        labels = inputs["labels"][:, 1:]
        keep = labels != IGNORE_INDEX
        return F.cross_entropy(self.logits(hidden[keep]).float(), labels[keep])

    @torch.no_grad()
    def generate(self, images: np.ndarray | torch.Tensor, prompts: Sequence[str], max_new_tokens: int = 4) -> list[str]:
        """Greedy answers (no KV cache: the same forward pass, re-run per new token)."""
        inputs = self.encode(images, prompts)
        is_target = torch.zeros_like(inputs["input_ids"], dtype=torch.bool)
        stop = set(self.spec.stop_ids(self.tokenizer))
        # Special tokens other than the stop tokens are never answers; a generated image token would also
        # break the next forward (a random-init model emitted one: "tokens: 513, features: 512").
        banned = sorted(set(self.tokenizer.all_special_ids) - stop)
        out: list[list[int]] = [[] for _ in prompts]
        for step in range(max_new_tokens):
            logits = self.logits(self.last_hidden_state(inputs)[:, -1])  # (B, V)
            logits[:, banned] = float("-inf")
            nxt = logits.argmax(-1)  # (B,)
            for row, tok in zip(out, nxt.tolist()):
                if not (row and row[-1] in stop):
                    row.append(tok)
            if all(r and r[-1] in stop for r in out) or step == max_new_tokens - 1:
                break
            inputs, is_target = self._append(inputs, is_target, nxt)
        return [self.tokenizer.decode([t for t in r if t not in stop], skip_special_tokens=True).strip() for r in out]

    def _append(self, inputs: dict[str, torch.Tensor], is_target: torch.Tensor,
                nxt: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Inputs with one generated (target-side) token appended to every row."""
        inputs = dict(inputs)
        inputs["input_ids"] = torch.cat([inputs["input_ids"], nxt[:, None]], 1)
        inputs["attention_mask"] = F.pad(inputs["attention_mask"], (0, 1), value=1)
        is_target = F.pad(is_target, (0, 1), value=True)
        inputs.update(self._token_types(inputs["input_ids"], is_target))
        return inputs, is_target

    # ---- vocabulary and persistence ------------------------------------------------------------
    def add_special_token(self, token: str) -> int:
        """Add ``token`` as a special token (idempotent), resize embeddings; returns its id."""
        if token not in self.tokenizer.get_vocab():
            self.tokenizer.add_special_tokens({"additional_special_tokens": [token]}, replace_extra_special_tokens=False)
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id >= self.model.get_input_embeddings().num_embeddings:
            self.model.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
        return token_id

    def n_parameters(self) -> int:
        """Number of distinct parameters (tied weights once)."""
        return sum(p.numel() for p in self.model.parameters())

    def save(self, path: str | Path, extra_files: Mapping[str, str] | None = None) -> Path:
        """save_pretrained (safetensors) + tokenizer + vlm4vla.json + README.md (+ extra text files),
        written to a temporary sibling and renamed into place (a reader never sees half a checkpoint)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        with _no_progress_bars():
            self.model.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        meta = {"family": self.family, "image_size": self.image_size, "card": self.card}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        (tmp / "README.md").write_text(model_card(self))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
        if path.exists():
            path.replace(trash / "old")  # move aside, then swap in: never a half-written checkpoint
        tmp.replace(path)
        shutil.rmtree(trash)
        return path


def model_card(backbone: Backbone) -> str:
    """A short README.md: family, sizes, parameter counts, and whatever ``backbone.card`` records."""
    counts = backbone.groups.counts(backbone.model)
    text = backbone.model.config.get_text_config()
    lines = [f"# {backbone.card.get('name', backbone.family)}", "",
             f"- family: `{backbone.family}` (transformers `{type(backbone.model).__name__}`)",
             f"- hidden size {backbone.hidden_size}, {text.num_hidden_layers} LM layers, "
             f"image {backbone.image_size} px, {backbone.n_image_tokens} image tokens",
             f"- parameters: {backbone.n_parameters():,} ("
             + ", ".join(f"{k} {v:,}" for k, v in counts.items() if v) + ")"]
    lines += [f"- {k}: {v}" for k, v in backbone.card.items() if k != "name" and v not in ("", None)]
    return "\n".join(lines) + "\n"


def make_backbone(cfg: BackboneConfig, texts: Sequence[str] | None = None) -> Backbone:
    """A randomly initialised backbone of ``cfg`` (seeded) with a tokenizer trained on ``texts``."""
    family = get_family(cfg.family)
    tokenizer = train_tokenizer([*(texts or ()), template_text(family)], cfg.vocab_size, family.special_tokens)
    torch.manual_seed(cfg.seed)
    model = family.model_class(family.build_config(cfg, tokenizer)).eval()
    card = {"init": "random (from scratch)", "backbone_config": asdict(cfg)}
    if cfg.vision_init == "pretrained":
        family.pretrained_vision(model)
        card["init"] = "vision tower pretrained (real weights), the rest random"
    return Backbone(family, model, tokenizer, cfg.image_size, card)


def template_text(family: Family) -> str:
    """The family's prompt template with special tokens removed (so the BPE learns its words)."""
    text = family.format_prompt("", 0) + family.format_target("")
    for token in all_special_tokens(family.special_tokens):
        text = text.replace(token, "\n")
    return text


def load_backbone(path: str | Path) -> Backbone:
    """A backbone from a local HF-format directory (saved by ``Backbone.save`` or a real checkpoint)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint directory (no config.json); expected a folder "
                                f"written by Backbone.save or a Hugging Face VLM of a supported family: "
                                f"{supported_families()}")
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    family = _family_for_model_type(model_type, path)
    meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).is_file() else {}
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    with _no_progress_bars():
        model = family.class_for(model_type).from_pretrained(path).eval()
    image_size = int(meta.get("image_size") or family.default_image_size(model.config))
    return Backbone(family, model, tokenizer, image_size, meta.get("card"))


def _family_for_model_type(model_type: str | None, path: Path) -> Family:
    for family in FAMILIES().values():
        if model_type in family.model_types:
            return family
    types = {f.name: f.model_types for f in FAMILIES().values()}
    raise ValueError(f"{path}: model_type={model_type!r} is not supported; supported families "
                     f"(model_type values): {types}")
