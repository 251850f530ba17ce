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
suite = {"preset": "mt10-vision", "image_size": 64, "camera": "corner"}
demos = {"episodes_per_task": 30, "seed": 0}
baselines = {"episodes_per_task": 20, "seed": 0}
out_dir = "artifacts/demonstrations"
metrics_path = "artifacts/metrics/00-demonstrations.json"

# %% [markdown]
# # 00 · Demonstrations: a Meta-World suite that needs vision
#
# Scripted Meta-World experts (privileged state) are rolled out on the *train* variations of each
# task and recorded with simulator ground truth (depth, segmentation, positions and their pixel
# projections). Then three reference policies are evaluated on the *held-out* variations with the
# one harness (`vlm4vla.evaluate.evaluate`):
#
# - **null**: no motion; what the scene does on its own (should be ~0);
# - **blind replay**: a training demonstration's actions replayed without looking; how much of the
#   suite can be solved from the instruction/task identity alone. The gap between this and the
#   expert is the part of the benchmark that needs vision;
# - **expert**: the scripted policy; the ceiling.

# %%
from IPython.display import Markdown, display

from vlm4vla.data.demos import DemoConfig, DemoStore, generate_demonstrations
from vlm4vla.data.demos_plots import plot_episode_strip, plot_ground_truth
from vlm4vla.envs import make_suite_config
from vlm4vla.evaluate import BlindReplayPolicy, EvalConfig, ExpertPolicy, NullPolicy, evaluate, success_table
from vlm4vla.pipeline.notebook import repo_path, write_metrics

suite_cfg = make_suite_config(suite["preset"], **{k: v for k, v in suite.items() if k != "preset"})
suite_cfg

# %% [markdown]
# ## Generate the demonstrations (train variations, scripted experts, failures dropped)

# %%
store = DemoStore.open(generate_demonstrations(suite_cfg, DemoConfig(**demos), repo_path(out_dir)))
display(Markdown((store.path / "DATASHEET.md").read_text()))

# %% [markdown]
# ## What is recorded: frames with their ground truth
# Red: gripper, cyan: task object, yellow: goal, projected with the camera's intrinsics/extrinsics.

# %%
plot_ground_truth(store);

# %%
plot_episode_strip(store, episode_index=0);

# %% [markdown]
# ## Reference policies on the held-out variations

# %%
eval_cfg = EvalConfig(**baselines)
blind = BlindReplayPolicy.from_store(store, seed=baselines["seed"])
results = {
    "null": evaluate(NullPolicy(), suite_cfg, eval_cfg),
    "blind replay": evaluate(blind, suite_cfg, EvalConfig(**baselines, execute_k=blind.chunk_size)),
    "expert": evaluate(ExpertPolicy(), suite_cfg, eval_cfg),
}
table = success_table(results)
table.style.format("{:.0%}")

# %% [markdown]
# Per-task 95% Wilson intervals of the blind replay (the vision-free floor a learned policy must beat):

# %%
{task: (row["successes"], row["n"], [round(x, 2) for x in row["ci95"]]) for task, row in results["blind replay"]["per_task"].items()}

# %%
write_metrics(metrics_path, {
    "n_frames": len(store),
    "n_episodes": len(store.episodes),
    "expert_demo_success": sum(v["successes"] for v in store.meta["expert_success"].values())
    / sum(v["attempts"] for v in store.meta["expert_success"].values()),
    "expert_eval_success": results["expert"]["mean_success"],
    "blind_replay_success": results["blind replay"]["mean_success"],
    "null_success": results["null"]["mean_success"],
    "eval_steps_per_s": results["expert"]["steps_per_s"],
})
