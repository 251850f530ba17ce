"""Keys and conventions shared by every part of the library (one place, so no part guesses)."""

# Batch / sample keys.
OBS_IMAGE = "observation.image"  # uint8 (B, H, W, 3), RGB, third-person camera, no history
OBS_STATE = "observation.state"  # privileged simulator state: scripted experts and probes only, never policies
INSTRUCTION = "instruction"  # str (or list[str] in a batch)
TASK = "task"  # benchmark task name, e.g. "button-press-topdown-v3"
ACTION = "action"  # float32 (B, N, A) action chunk in the benchmark's action space
EPISODE_INDEX = "episode_index"
FRAME_INDEX = "frame_index"

# The paper clips actions to [-0.65, 0.65] and rescales to [-1, 1] (STUDY.md, "The adapter").
ACTION_CLIP = 0.65

# A policy run's folders. Checkpoints, the final policy and videos stay in ``RUNS_DIR/<run>/`` (DVC cache,
# this machine only); its small results (closed-loop results, training history, summary) are copied to
# ``RUN_RESULTS_DIR/<run>/``, which git tracks, so the findings outlive the machine that trained them.
RUNS_DIR = "artifacts/runs"
RUN_RESULTS_DIR = "artifacts/run-results"
