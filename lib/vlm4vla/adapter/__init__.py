"""The VLM4VLA adapter: ActionQuery, action head, losses, data conventions, freezing, policy.

Uses ``backbones``; see the package docstring of vlm4vla for what this part may import.
"""

from vlm4vla.adapter.actions import STEPS, ActionConventions, fit_conventions
from vlm4vla.adapter.freezing import PRESETS as FREEZE_PRESETS
from vlm4vla.adapter.freezing import FreezeSpec, apply_freezing, freeze_preset, freezing_table
from vlm4vla.adapter.head import ActionHead, HeadConfig
from vlm4vla.adapter.losses import action_loss
from vlm4vla.adapter.policy import VLAPolicy, load_policy, save_policy
from vlm4vla.adapter.query import QUERY_TOKEN, ActionQueryAdapter, make_adapter

__all__ = [
    "STEPS", "ActionConventions", "fit_conventions", "FREEZE_PRESETS", "FreezeSpec", "apply_freezing",
    "freeze_preset", "freezing_table", "ActionHead", "HeadConfig", "action_loss", "VLAPolicy",
    "load_policy", "save_policy", "QUERY_TOKEN", "ActionQueryAdapter", "make_adapter",
]
