# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
demos = {"suite": "libero_object", "tasks": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "episodes_per_task": 20, "first_init": 0,
         "image_size": 64, "camera": "agentview"}
libero_python = ".venv-libero/bin/python"
require_libero = True
out_dir = "artifacts/libero-demonstrations"
metrics_path = "artifacts/metrics/09-libero-demonstrations.json"

# %% [markdown]
# # 09 · Demonstrations: LIBERO (Benchmark 2) with simulator ground truth
#
# A privileged scripted pick-and-place expert (`lib/vlm4vla/envs/libero_expert.py`) runs on the official
# initial states of each task of a LIBERO suite; only successful episodes are kept. Every step records
# what the Meta-World demonstrations record (notebook 00), in the same memory-mappable layout
# (`DemoStore`): the RGB frame, the 7-D action, the instruction, and the simulator's ground truth:
# end-effector position and gripper opening, object positions, depth (metres) and segmentation from
# the same camera, pixel projections of the gripper, the object to move and the place target, and
# the task progress.
#
# LIBERO lives in its own environment (`.venv-libero`: robosuite 1.4, mujoco 2.3.7), so this notebook's
# kernel starts the recorder there (`libero_python`) and writes the store here. Without that
# environment the stage fails when `require_libero` is set (default profile), or records nothing and
# says why (smoke profile, CI).

# %%
from IPython.display import Markdown, display

from vlm4vla.data.demos import DemoStore
from vlm4vla.data.demos_plots import plot_episode_strip
from vlm4vla.envs.libero_datasheet import plot_libero_ground_truth, store_summary
from vlm4vla.envs.libero_demos import NOT_RECORDED, LiberoDemoConfig, generate_libero_demonstrations
from vlm4vla.pipeline.notebook import repo_path, write_metrics

cfg = LiberoDemoConfig(**demos)
cfg

# %% [markdown]
# ## Record the demonstrations (scripted expert, official initial states, failures dropped)

# %%
path = generate_libero_demonstrations(cfg, repo_path(out_dir), repo_path(libero_python), require=require_libero)
store = DemoStore.open(path) if path is not None else None
display(Markdown((repo_path(out_dir) / ("DATASHEET.md" if store else NOT_RECORDED)).read_text()))

# %% [markdown]
# ## What is recorded: frames with their ground truth
# Red: gripper (grip site between the fingertips), cyan: object to move, yellow: place target, all
# projected with the camera's intrinsics and extrinsics. Segmentation: background, robot, gripper, object
# to move, target, other objects.

# %%
if store is not None:
    plot_libero_ground_truth(store);

# %%
if store is not None:
    plot_episode_strip(store, episode_index=0);

# %% [markdown]
# ## Headline numbers
# `object_px_on_object`: share of frames whose projected object centre lies on the object's pixels in
# the segmentation image (below 1 where the gripper hides it while carrying); likewise for the target.

# %%
summary = store_summary(store) if store is not None else {"n_episodes": 0, "n_frames": 0}
write_metrics(metrics_path, {"recorded": store is not None, **summary})
summary
