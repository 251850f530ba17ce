# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Finding 1: does a better VLM make a better VLA?
#
# Every zoo backbone, and from-scratch twins (same architecture, random init), trained with the
# VLM4VLA adapter on the benchmark over several seeds (cached runs `bb-*` of `02-train-policy`).
# The paper's claims (STUDY.md, finding 1): VLM initialisation beats from-scratch by a wide margin;
# general VQA capability is a poor predictor of VLA performance (strongly positive on CALVIN, weak or
# negative on Simpler and LIBERO); a small model can tie for best.
#
# Statistics: the replication unit is the training seed (t-intervals over seed means); pooled
# episode counts give Wilson intervals and Fisher tests; correlations over backbones carry percentile
# bootstrap intervals and permutation p-values. Everything below is computed from cached runs: re-running
# this notebook changes nothing.

# %% tags=["parameters"]
run_prefix = "bb-"
execute_k = 0  # 0: the largest k evaluated (the whole chunk), the "final checkpoint, fixed k" rule
out_dir = "artifacts/backbones"
metrics_path = "artifacts/metrics/03-backbones.json"

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from vlm4vla.analysis import backbones as bb
from vlm4vla.analysis import paper, plots
from vlm4vla.analysis.baselines import above_blind, load_baselines, per_task_with_baselines
from vlm4vla.analysis.runs import load_early_checkpoints, load_runs
from vlm4vla.analysis.zoo import load_probes
from vlm4vla.pipeline.notebook import repo_root, write_metrics

root = repo_root()
episodes = load_runs(root, run_prefix)
fixed = bb.fixed_k(episodes, execute_k or None)
probes = load_probes(root)
print(f"{episodes['run'].nunique()} runs, {episodes.groupby('backbone')['seed'].nunique().to_dict()} seeds per backbone, "
      f"{int(fixed.groupby('run')['n'].sum().iloc[0])} evaluation episodes per run at k={int(fixed['k'].iloc[0])}")

# %% [markdown]
# ## Main table (ours) and the paper's, for orientation
# Ours: mean success over tasks, mean over seeds, with the seed t-interval and the pooled Wilson
# interval. The paper's numbers are on the paper's benchmarks with 1.7-30B VLMs: compare orderings, not values.

# %%
table = bb.main_table(fixed)
display(table.round(3))
display(paper.main_table())

# %%
ax = plots.success_bars(table)
ax.set_title("VLA success per backbone (green: VLM-initialised, grey: from scratch)");

# %% [markdown]
# ## Per task, next to the vision-free baselines and the expert
# Same held-out episodes for every column (`10-baselines`). The null policy (no motion) and the
# blind replay (a demonstration's actions, no image) show how much of a task needs no vision.

# %%
baselines = load_baselines(root)
pretrained = fixed[fixed["init"] == "pretrained"]
per_task = per_task_with_baselines(pretrained, "backbone", baselines)
fig, ax = plt.subplots(figsize=(1.0 * per_task.shape[1] + 2, 0.45 * per_task.shape[0] + 1.5))
sns.heatmap(per_task, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", cbar=False, ax=ax)
ax.set_title(f"success per task at k={int(fixed['k'].iloc[0])}, final checkpoint (mean over seeds)")
plt.show()
display(Markdown("Tasks where a backbone beats the blind replay: " + "; ".join(
    f"**{b}** {len(above_blind(per_task, b))}/{len(per_task) - 1}" for b in pretrained["backbone"].unique())))

# %% [markdown]
# ## VLM initialisation vs from scratch

# %%
gaps = bb.init_gap(fixed)
gaps.round(3)

# %% [markdown]
# ## General capability and embodied skill vs control
# One panel per probe: the zoo's probe score (x) against the VLA success of the pretrained backbone
# (y), with a least-squares line. The table gives Spearman and Pearson coefficients with bootstrap
# intervals and permutation p-values. Which probe predicts control best is the question the paper
# leaves open.

# %%
success = table[table["init"] == "pretrained"].groupby("backbone")["success"].mean()
correlations = bb.capability_correlations(success, probes)
display(correlations.round(3))
columns = [c for c in probes.columns if c in set(correlations["probe"])]
n_cols = min(4, max(1, len(columns)))
n_rows = max(1, -(-len(columns) // n_cols))
fig, axes = plt.subplots(n_rows, n_cols, figsize=(4 * n_cols, 3.4 * n_rows), squeeze=False)
for ax, probe in zip(axes.flat, columns):
    plots.capability_scatter(success, probes[probe], title=probe.removeprefix("probe_"), ax=ax)
for ax in list(axes.flat)[len(columns):]:
    ax.set_visible(False)
fig.tight_layout()

# %% [markdown]
# ## Per-task profile (the paper's teaser radar) and execution length / checkpoint selection
# "Fixed k" is the pre-registered rule (the whole chunk, final checkpoint); "best of" picks the best
# k, and the best (k, checkpoint), after seeing the results, as the paper does: the difference is the
# optimism of that selection. The sweep (every k, one earlier checkpoint at the first k) runs on the
# seed-0 run of each backbone only (budget), so this table compares the rules on those runs.

# %%
plots.radar(bb.task_profile(fixed))
selection = bb.selection_effect(episodes, load_early_checkpoints(root, run_prefix))
selection.round(3)

# %% [markdown]
# ## Conclusion (computed from the numbers above)

# %%
lines = bb.conclusions(table, gaps, correlations)
display(Markdown("\n".join(f"- {line}" for line in lines)))

# %%
best = bb.best_predictor(correlations)
write_metrics(metrics_path, {
    "runs": episodes["run"].nunique(),
    "best_backbone": table[table["init"] == "pretrained"].iloc[0]["backbone"],
    "best_success": float(table[table["init"] == "pretrained"]["success"].max()),
    "mean_init_gap": float(gaps["gap"].mean()) if len(gaps) else float("nan"),
    "spearman_general_vqa": float(correlations.query("probe == 'general_vqa_accuracy' and method == 'spearman'")["coefficient"].iloc[0])
    if "general_vqa_accuracy" in set(correlations.get("probe", [])) else float("nan"),
    "best_predictor": best["probe"] if best is not None else "none",
    "mean_selection_optimism": float(selection["optimism"].mean()),
})
