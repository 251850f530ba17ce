"""The trained adapter as a ``Policy`` for the evaluation harness, and its save / load.

A saved policy is a folder:
- ``backbone/``: ``Backbone.save`` (safetensors weights, tokenizer holding ``<action_query>``);
- ``adapter.safetensors``: the ActionQuery and the head;
- ``policy.json``: head config, action conventions (q01 / q99, clip) and format version.
Loading never unpickles: safetensors and JSON only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from vlm4vla.adapter.actions import ActionConventions
from vlm4vla.adapter.head import HeadConfig
from vlm4vla.adapter.query import ActionQueryAdapter
from vlm4vla.backbones.base import load_backbone
from vlm4vla.constants import INSTRUCTION, OBS_IMAGE

POLICY_FILE = "policy.json"
ADAPTER_FILE = "adapter.safetensors"
BACKBONE_DIR = "backbone"
FORMAT_VERSION = 1


class VLAPolicy:
    """Adapter + conventions behind the harness's Policy protocol (``chunk_size``, ``reset``, ``act``)."""

    def __init__(self, adapter: ActionQueryAdapter, conventions: ActionConventions) -> None:
        if conventions.arm_dim != adapter.head_cfg.arm_dim:
            raise ValueError(f"conventions have {conventions.arm_dim} arm dims, head {adapter.head_cfg.arm_dim}")
        self.adapter = adapter.eval()
        self.conventions = conventions

    @property
    def chunk_size(self) -> int:
        """Actions predicted per call (N)."""
        return self.adapter.head_cfg.chunk_size

    def reset(self) -> None:
        """No state between calls: one camera, no history (paper's set-up)."""

    @torch.no_grad()
    def act(self, batch: Mapping[str, Any]) -> np.ndarray:
        """uint8 images (B, H, W, 3) + instructions -> env actions (B, N, A) float32."""
        images, texts = batch[OBS_IMAGE], list(batch[INSTRUCTION])
        arm, gripper = self.adapter(self.adapter.encode(images, texts))
        return self.conventions.decode(arm.float().cpu().numpy(), gripper.float().cpu().numpy())

    def to(self, device: str | torch.device) -> "VLAPolicy":
        """Move the model to ``device``."""
        self.adapter.to(device)
        return self


def adapter_own_state(adapter: ActionQueryAdapter) -> dict[str, torch.Tensor]:
    """The tensors the adapter adds to the backbone (ActionQuery + head), on CPU, contiguous."""
    state = {"query": adapter.query}
    state.update({f"head.{k}": v for k, v in adapter.head.state_dict().items()})
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_policy(policy: VLAPolicy, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write the policy folder atomically (a temporary sibling renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    policy.adapter.backbone.save(tmp / BACKBONE_DIR)
    save_file(adapter_own_state(policy.adapter), str(tmp / ADAPTER_FILE))
    meta = {"format_version": FORMAT_VERSION, "head": asdict(policy.adapter.head_cfg),
            "conventions": policy.conventions.to_dict(), "extra": dict(extra or {})}
    (tmp / POLICY_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    if path.exists():
        shutil.rmtree(path)
    tmp.replace(path)
    return path


def head_config_from_dict(data: Mapping[str, Any]) -> HeadConfig:
    """HeadConfig from its JSON form (lists back to tuples)."""
    return HeadConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> VLAPolicy:
    """A policy saved by ``save_policy`` (safetensors + JSON only; nothing is unpickled)."""
    path = Path(path)
    if not (path / POLICY_FILE).is_file():
        raise FileNotFoundError(f"{path} holds no {POLICY_FILE}: not a folder written by save_policy")
    meta = json.loads((path / POLICY_FILE).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: policy format {meta.get('format_version')!r}, this code reads {FORMAT_VERSION}")
    adapter = ActionQueryAdapter(load_backbone(path / BACKBONE_DIR), head_config_from_dict(meta["head"]))
    state = load_file(str(path / ADAPTER_FILE))
    with torch.no_grad():
        adapter.query.copy_(state.pop("query"))
    adapter.head.load_state_dict({k.removeprefix("head."): v for k, v in state.items()}, strict=True)
    policy = VLAPolicy(adapter, ActionConventions.from_dict(meta["conventions"]))
    return policy.to(device)
