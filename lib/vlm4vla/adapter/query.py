"""The VLM4VLA adapter: one learnable ActionQuery appended to the VLM's own input, one forward pass.

Mechanism (the same for every family, no per-family forward):
- the token ``<action_query>`` is added to the vocabulary and passed as ``suffix`` to
  ``backbone.encode``, so the sequence is ``[image tokens][chat-formatted prompt][<action_query>]``
  and image merging / Qwen's multimodal rope index keep working from ``input_ids``;
- a forward hook on the word-embedding module replaces the rows of that token with the learnable
  ``query`` vector (zero-initialised, as in the paper), so the query is a parameter of the adapter,
  trainable even when word embeddings are frozen;
- ``backbone.last_hidden_state`` runs once; the hidden state where ``input_ids == query id``
  (robust to the padding side) goes to the ``FCDecoder`` head.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from vlm4vla.adapter.head import ActionHead, HeadConfig
from vlm4vla.backbones.base import Backbone, action_prompt

QUERY_TOKEN = "<action_query>"


class ActionQueryAdapter(nn.Module):
    """Backbone + ActionQuery + action head. ``forward(inputs) -> (arm (B,N,arm), gripper logits (B,N))``."""

    def __init__(self, backbone: Backbone, head: HeadConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.head_cfg = head
        self.query_id = backbone.add_special_token(QUERY_TOKEN)
        self.query = nn.Parameter(torch.zeros(backbone.hidden_size))  # zero-init (paper)
        self.head = ActionHead(backbone.hidden_size, head)
        embeddings = backbone.model.get_input_embeddings()
        self._hook = embeddings.register_forward_hook(self._insert_query)

    def _insert_query(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        """Embedding-module hook: rows whose id is the query token get the learnable query."""
        ids = args[0] if args else None
        if not torch.is_tensor(ids) or ids.shape != output.shape[:-1]:
            return output
        is_query = (ids == self.query_id).unsqueeze(-1)  # (B, T, 1)
        return torch.where(is_query, self.query.to(output.dtype), output)

    def encode(self, images: np.ndarray | torch.Tensor, instructions: Sequence[str]) -> dict[str, torch.Tensor]:
        """uint8 images (B, H, W, 3) + instructions -> backbone inputs ending in the ActionQuery."""
        prompts = [action_prompt(text) for text in instructions]
        return self.backbone.encode(images, prompts, suffix=QUERY_TOKEN)

    def query_state(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Last-layer hidden state at the ActionQuery position, (B, D)."""
        hidden = self.backbone.last_hidden_state(inputs)  # (B, T, D)
        is_query = inputs["input_ids"] == self.query_id  # (B, T)
        per_row = is_query.sum(1)
        if not bool((per_row == 1).all()):
            raise ValueError(f"expected exactly one {QUERY_TOKEN} per row, found {per_row.tolist()}")
        return hidden[is_query]  # row-major order -> (B, D) in batch order

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Arm actions in [-1, 1] (B, N, arm_dim) and gripper logits (B, N)."""
        return self.head(self.query_state(inputs))

    def new_parameters(self) -> dict[str, int]:
        """Parameters the adapter adds, and their share of the backbone's (paper: < 1%)."""
        added = self.query.numel() + sum(p.numel() for p in self.head.parameters())
        base = self.backbone.n_parameters()
        return {"new_parameters": added, "backbone_parameters": base, "new_share": added / base}


def make_adapter(backbone: Backbone, head: HeadConfig, seed: int = 0) -> ActionQueryAdapter:
    """An adapter whose head initialisation is seeded (the backbone is left as given)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return ActionQueryAdapter(backbone, head)
    finally:
        torch.random.set_rng_state(state)
