"""The one training loop (init, pure step, thin loop, checkpoints). Uses ``adapter`` and ``data``.

``train(run_cfg, out_dir) -> dict``; configs in ``vlm4vla.train.config``.
"""

from vlm4vla.train.config import BackboneSpec, RunConfig, TrainConfig, make_run_config, resolve_paths
from vlm4vla.train.checkpoint import discard_foreign_run
from vlm4vla.train.loop import make_loader, train, train_to_milestone
from vlm4vla.train.results import RESULT_FILES, publish_results
from vlm4vla.train.step import TrainingDiverged, TrainState, init_state, lr_at, train_step

__all__ = ["BackboneSpec", "RunConfig", "TrainConfig", "make_run_config", "resolve_paths", "train", "make_loader",
           "TrainingDiverged", "TrainState", "init_state", "lr_at", "train_step", "train_to_milestone",
           "discard_foreign_run", "RESULT_FILES", "publish_results"]
