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
# # Finding 2: do auxiliary embodied tasks help?
#
# Each base VLM is first fine-tuned on one of seven auxiliary embodied tasks built from the
# simulator's ground truth (`04-auxiliary-vlms`: pointing, RGB-D spatial, spatial VQA, action VQA,
# planning, dense maps, and a VQA mix with the vision tower frozen), then trained as a VLA exactly like
# its base (`ax-` runs vs the base's `bb-` runs, same seeds). The paper: no auxiliary task helps,
# most hurt slightly, with more variance; spatial understanding (Vica-332k) is the least harmful.
#
# Statistics: the replication unit is the training seed; each auxiliary task's change vs the base has a
# Welch t-interval over seed means and its two-sided p-value (one seed: over the shared seed's
# episodes, see below); skill gained (the auxiliary probe after minus before) vs control gained is a
# Spearman correlation with bootstrap CI and permutation p-value.

# %% tags=["parameters"]
bases = ["qwen-s-long", "idefics3-s-long"]
aux_dir = "artifacts/auxiliary-vlms"
out_dir = "artifacts/auxiliary-tasks"
metrics_path = "artifacts/metrics/05-auxiliary-tasks.json"

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from vlm4vla.analysis import auxiliary as aux
from vlm4vla.analysis import plots
from vlm4vla.analysis.backbones import fixed_k
from vlm4vla.analysis.baselines import load_baselines, per_task_with_baselines
from vlm4vla.analysis.builds import AUXILIARY, record_builds, with_run_builds_table
from vlm4vla.analysis.runs import coverage, coverage_note, load_finished, load_runs
from vlm4vla.backbones.auxiliary import auxiliary_examples, auxiliary_table
from vlm4vla.data.demos import DemoStore
from vlm4vla.pipeline.notebook import repo_path, repo_root, write_metrics

root = repo_root()
base_runs = fixed_k(load_runs(root, "bb-"))
base_runs = base_runs[(base_runs["init"] == "pretrained") & base_runs["backbone"].isin(bases)]
episodes = pd.concat([base_runs, fixed_k(load_finished(root, ["ax-"], required=False))], ignore_index=True)
runs = coverage(root, ["ax-"])
# The skills of the fine-tune builds the runs trained on (a fresh machine rebuilds them with other bytes;
# artifacts/auxiliary-vlm-builds.json, in git, keeps every build seen): `builds` says how many builds a
# row averages over its runs; 0 means the build on disk, for runs whose build was never recorded.
skills = with_run_builds_table(auxiliary_table(repo_path(aux_dir)), record_builds(root, AUXILIARY), runs,
                               ["skill_before", "skill_after", "score_before", "score_after", "vqa_before", "vqa_after"])
display(Markdown(coverage_note(runs)))

# %% [markdown]
# ## VLA success after each auxiliary fine-tune, per seed (box plots as in the paper's figure)

# %%
points = aux.seed_success(episodes)
labelled = aux.label_aux(episodes)
fig, axes = plt.subplots(1, len(bases), figsize=(6 * len(bases), 3.8), squeeze=False)
for ax, base in zip(axes[0], bases):
    data = points[points["base"] == base]
    order = ["none", *sorted(set(data["aux_task"]) - {"none"})]
    sns.boxplot(data=data, x="aux_task", y="success_rate", order=order, ax=ax, color="#cde")
    plots.seed_points(labelled[labelled["base"] == base], "aux_task", order, ax)
    ax.set(title=f"{base}: VLA success per seed ('none' = the base)", xlabel="", ylabel="mean success (dots: seeds, 95% Wilson)")
    ax.set_ylim(bottom=0)
    ax.tick_params(axis="x", rotation=30)
fig.tight_layout()

# %% [markdown]
# Change against the base. With two or more seeds per auxiliary task (the default profile runs seed 1
# of the auxiliary runs last) the unit is the seed: Welch t-interval and t-test against the base's
# seeds (with 2-3 seeds a side a permutation test cannot reach p < 0.1). With one seed the comparison is
# with the base run of the same seed over its 200 evaluation episodes, Newcombe interval and Fisher
# exact test (`unit` says which); the base's own seed-to-seed SD (`base_seed_sd`, 3 seeds) says
# how large a change seed noise alone makes.

# %%
changes = aux.versus_base(episodes)
changes.round(3)

# %% [markdown]
# Per task, each auxiliary fine-tune (mean over seeds) next to the vision-free baselines and the expert.

# %%
baselines = load_baselines(root)
for base in bases:
    per_task = per_task_with_baselines(labelled[labelled["base"] == base], "aux_task", baselines)
    fig, ax = plt.subplots(figsize=(1.0 * per_task.shape[1] + 2, 0.45 * per_task.shape[0] + 1.5))
    sns.heatmap(per_task, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", cbar=False, ax=ax)
    ax.set_title(f"{base}: success per task after each auxiliary fine-tune ('none' = the base)")
    plt.show()

# %% [markdown]
# ## Does auxiliary skill gained predict control gained?
# Skill gained: the share of the task's held-out probe items answered right (`score`: exact answer, a
# point within 4 px, grid cells) after the fine-tune minus before; one bounded scale for every task.
# `skill_before` / `skill_after` are each task's headline metric as `04-auxiliary-vlms` reports it (mean
# pixel error for pointing and planning, where one far-off parsed point dominates the mean).

# %%
joined, corr = aux.skill_vs_control(changes, skills)
display(joined[["base", "aux_task", "skill_metric", "skill_before", "skill_after", "score_before", "score_after",
                "skill_gain", "vqa_before", "vqa_after", "builds", "change"]].round(3))
if len(joined):
    ax = sns.scatterplot(data=joined, x="skill_gain", y="change", hue="base", style="aux_task", s=70)
    ax.axhline(0, color="#999", lw=0.8)
    ax.set(xlabel="auxiliary skill gained (share of probe items right, after - before)",
           ylabel="VLA success change vs base")
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")

# %% [markdown]
# ## Example auxiliary questions and answers before / after the fine-tune
# Held-out frames of the auxiliary store (`04-auxiliary-vlms`), one row per fine-tune of the first base:
# the true answer, then the base model's answer ("before") and the fine-tuned model's ("after").

# %%
aux_store = DemoStore.open(repo_path(aux_dir) / "aux-demos")
shown = [name for name in skills["name"] if name.startswith(f"{bases[0]}-aux-")]
for name, table in auxiliary_examples(repo_path(aux_dir), shown).items():
    plots.auxiliary_examples(aux_store.frames, table, title=name)
    plt.show()
    display(plots.distinct_examples(table)[["kind", "prompt", "answer", "before", "after"]])

# %% [markdown]
# ## Conclusion (computed from the numbers above)

# %%
lines = aux.conclusions(changes, corr)
display(Markdown("\n".join(f"- {line}" for line in lines)))
write_metrics(metrics_path, {
    "fine_tunes": len(changes),
    "mean_change_vs_base": float(changes["change"].mean()) if len(changes) else float("nan"),
    "significantly_better": int((changes["ci_low"] > 0).sum()),
    "significantly_worse": int((changes["ci_high"] < 0).sum()),
    "skill_control_spearman": corr.coefficient if corr is not None else float("nan"),
})
