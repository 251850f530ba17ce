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
# VLM4VLA adapter on each benchmark (cached runs of `02-train-policy`: `bb-*` on Meta-World over
# several seeds, `lb-*` on LIBERO), reported per benchmark as the paper does.
# The paper's claims (STUDY.md, finding 1): VLM initialisation beats from-scratch by a wide margin;
# general VQA capability is a poor predictor of VLA performance (strongly positive on CALVIN, weak or
# negative on Simpler and LIBERO); a small model can tie for best.
#
# Statistics: the replication unit is the training seed (t-intervals over seed means; differences by
# Welch t once both sides have 2+ seeds); pooled episode counts give Wilson intervals, and with one seed
# differences use Newcombe intervals and Fisher tests; correlations over backbones carry percentile
# bootstrap intervals and permutation p-values, with the smallest coefficient the number of backbones
# can detect. Everything below is computed from cached runs: re-running
# this notebook changes nothing.

# %% tags=["parameters"]
run_prefixes = ["bb-", "lb-"]  # Meta-World runs, LIBERO runs (a prefix without runs is skipped, and said so)
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
from vlm4vla.analysis.baselines import above_blind, against_blind, load_baselines, per_task_with_baselines
from vlm4vla.analysis.runs import (coverage, coverage_note, load_early_checkpoints, load_finished,
                                   load_histories, training_fit)
from vlm4vla.analysis.zoo import load_probes
from vlm4vla.analysis.builds import ZOO, build_spread, build_table, record_builds, spread_sentence, with_run_builds
from vlm4vla.pipeline.notebook import repo_root, write_metrics

root = repo_root()
episodes = load_finished(root, run_prefixes)
fixed = bb.fixed_k(episodes, execute_k or None)
benchmarks = list(dict.fromkeys(fixed["benchmark"]))
runs = coverage(root, run_prefixes)
builds = record_builds(root, ZOO)  # the probes of every zoo build seen so far, kept in git
probes = with_run_builds(load_probes(root), builds, runs)  # general VQA of the builds the runs trained on
for benchmark, group in fixed.groupby("benchmark", sort=False):
    print(f"{benchmark}: {group['run'].nunique()} runs, seeds per backbone {group.groupby('backbone')['seed'].nunique().to_dict()}, "
          f"{int(group.groupby('run')['n'].sum().iloc[0])} evaluation episodes per run at k={int(group['k'].iloc[0])}")
display(Markdown(coverage_note(runs)))

# %% [markdown]
# ## Main table (ours) and the paper's, for orientation
# Ours: mean success over tasks, mean over seeds, with the seed t-interval (needs 2+ seeds) and the
# pooled Wilson interval, per benchmark. The paper's numbers are on the paper's benchmarks with 1.7-30B
# VLMs: compare orderings, not values.

# %%
table = bb.main_table(fixed)
display(table.round(3))
display(table.pivot_table(index=["backbone", "init"], columns="benchmark", values="success").round(3))
display(paper.main_table())

# %%
fig, axes = plt.subplots(1, len(benchmarks), figsize=(6.5 * len(benchmarks), 4), squeeze=False)
for ax, benchmark in zip(axes.flat, benchmarks):
    plots.success_bars(table[table["benchmark"] == benchmark], ax=ax)
    ax.set_title(f"{benchmark}: VLA success per backbone\n(green: VLM-initialised, grey: from scratch)")
fig.tight_layout()

# %% [markdown]
# ## Per task, next to the vision-free baselines and the expert
# Same held-out episodes for every column (`10-baselines`, Meta-World). The null policy (no motion) and
# the blind replay (a demonstration's actions, no image) show how much of a task needs no vision.

# %%
references = {"metaworld": load_baselines(root, "metaworld")}
for benchmark in [b for b in benchmarks if b != "metaworld"]:
    try:
        references[benchmark] = load_baselines(root, benchmark)
    except FileNotFoundError as missing:  # a partial report rendered before the stage (`dvc repro` always has it)
        print(f"{benchmark}: no reference policies yet, so no reference columns below ({missing})")
        references[benchmark] = pd.DataFrame()
baselines = references["metaworld"]
pretrained = fixed[(fixed["init"] == "pretrained") & (fixed["benchmark"] == "metaworld")]
per_task = per_task_with_baselines(pretrained, "backbone", baselines)
fig, ax = plt.subplots(figsize=(1.0 * per_task.shape[1] + 2, 0.45 * per_task.shape[0] + 1.5))
sns.heatmap(per_task, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", cbar=False, ax=ax)
ax.set_title(f"success per task at k={int(fixed['k'].iloc[0])}, final checkpoint (mean over seeds)")
plt.show()
display(Markdown("Tasks where a backbone beats the blind replay: " + "; ".join(
    f"**{b}** {len(above_blind(per_task, b))}/{len(per_task) - 1}" for b in pretrained["backbone"].unique())))

# %% [markdown]
# LIBERO, per task, next to its own reference policies (`11-libero-baselines`, same episodes):

# %%
for benchmark in [b for b in benchmarks if b != "metaworld"]:
    group = fixed[(fixed["init"] == "pretrained") & (fixed["benchmark"] == benchmark)]
    grid = (per_task_with_baselines(group, "backbone", references[benchmark]) if len(references[benchmark].columns)
            else group.groupby(["task", "backbone"])["success_rate"].mean().unstack("backbone"))
    grid.index = [plots.short_task(t) for t in grid.index]
    fig, ax = plt.subplots(figsize=(1.0 * grid.shape[1] + 2, 0.45 * grid.shape[0] + 1.5))
    sns.heatmap(grid, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", cbar=False, ax=ax)
    ax.set_title(f"{benchmark}: success per task at k={int(group['k'].iloc[0])}, final checkpoint")
    plt.show()

# %% [markdown]
# ## VLM initialisation vs from scratch

# %%
gaps = bb.init_gap(fixed)
gaps.round(3)

# %% [markdown]
# ## How well each policy fitted its demonstrations, against its closed-loop success
# The training figures over each run's last 200 steps (`history.csv`): the arm's Huber loss and the
# share of gripper commands (open / closed) the head gets right on its training batches. A backbone
# whose features cannot tell the phase of the task (is the gripper at the object yet?) shows it here
# before any closed-loop episode; a well-fitted policy that still fails in closed loop points to
# compounding errors instead. Correlations over runs, per benchmark.

# %%
histories = load_histories(root, sorted(fixed["run"].unique()))  # each run's history.csv, read once
fit = bb.fit_and_success(fixed, training_fit(histories))
display(fit.set_index("run").sort_values(["benchmark", "success"], ascending=[True, False])
        [["benchmark", "success", "loss_arm", "loss_gripper", "acc_gripper"]].round(3))
fig, axes = plt.subplots(1, len(benchmarks), figsize=(5.5 * len(benchmarks), 3.6), squeeze=False)
for ax, benchmark in zip(axes[0], benchmarks):
    sns.scatterplot(data=fit[fit["benchmark"] == benchmark], x="acc_gripper", y="success", hue="backbone",
                    hue_order=sorted(fit["backbone"].unique()), style="init", style_order=sorted(fit["init"].unique()),
                    s=70, ax=ax, legend=ax is axes[0][-1])  # one colour per backbone in every panel
    ax.set(title=f"{benchmark}: training fit vs closed-loop success", xlabel="gripper accuracy, last 200 training steps",
           ylabel="closed-loop success")
if axes[0][-1].get_legend():
    sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
fig.tight_layout()
plt.show()
fit_corr = bb.fit_correlations(fit)
fit_corr.round(3) if len(fit_corr) else print("fewer than 3 runs per benchmark with a training history: no correlation")

# %% [markdown]
# ## Was training finished? Learning curves at the training budget
# Every run trains for the same number of steps (the profile's budget), as in the paper. A run whose
# loss still falls at the end is measured mid-way: its success ranks how fast its backbone learns as
# much as how far it could get. The arm's training loss per step (mean over seeds, smoothed over 100
# steps, log scale), per backbone, then for each run the fall of the arm loss over the last 500 steps.

# %%
curves = (histories.merge(fit[["run", "backbone", "init", "benchmark"]], on="run").sort_values(["run", "step"])
          .assign(loss_arm=lambda d: d.groupby("run")["loss_arm"].transform(lambda x: x.rolling(100, min_periods=1).mean())))
curves["backbone_init"] = curves["backbone"] + " (" + curves["init"] + ")"
fig, axes = plt.subplots(1, len(benchmarks), figsize=(5.5 * len(benchmarks), 3.6), squeeze=False)
for ax, benchmark in zip(axes[0], benchmarks):
    sns.lineplot(data=curves[(curves["benchmark"] == benchmark) & (curves["step"] % 20 == 0)], x="step", y="loss_arm",
                 hue="backbone_init", hue_order=sorted(curves["backbone_init"].unique()), errorbar=None, ax=ax,
                 legend=ax is axes[0][-1])
    ax.set(title=f"{benchmark}: arm loss while training", yscale="log", ylabel="arm loss (Huber, 100-step mean)")
if axes[0][-1].get_legend():
    sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=8, title="backbone (init)")
fig.tight_layout()
plt.show()
finished = bb.convergence(histories, fit)
finished.set_index("run").round(3)

# %% [markdown]
# ## One recipe, several builds: how much the probe itself moves
# A fresh machine rebuilds the zoo from the same seeded recipe; on another CPU the float kernels differ
# and so do the weights. `artifacts/zoo-builds.json` (in git) keeps the general VQA of every build seen,
# keyed by the hash dvc.lock records for the checkpoint each run trained from; the correlations below use,
# per backbone, the VQA of the builds its runs trained on, averaged over those runs. The embodied and
# linear robot probes come from the one build the robot-probes stage measured (its dvc.lock entry).

# %%
per_build = build_table(builds, runs[runs["prefix"] == "bb-"])
spread = build_spread(per_build)
display(per_build.round(3))
display(Markdown(spread_sentence(spread, probes)))
if len(spread):
    fig, ax = plt.subplots(figsize=(7, 3.2))
    shown = per_build[per_build["backbone"].isin(spread["backbone"])]
    for i, (name, group) in enumerate(shown.groupby("backbone")):
        ax.errorbar(group["vqa_accuracy"], [i] * len(group), xerr=[group["vqa_accuracy"] - group["ci_low"],
                    group["ci_high"] - group["vqa_accuracy"]], fmt="o", alpha=0.7, capsize=3)
    ax.set_yticks(range(shown["backbone"].nunique()), sorted(shown["backbone"].unique()))
    ax.set(xlabel="general VQA accuracy (95% Wilson), one dot per build", title="The zoo's general VQA, build by build")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## General capability and embodied skill vs control
# Per benchmark, one panel per probe: the zoo's probe score (x) against the VLA success of the
# pretrained backbone (y), with a least-squares line. The bars are 95% intervals of success: over seeds
# where a backbone has 2+, else Wilson over its pooled episodes. The table gives Spearman and Pearson
# coefficients with bootstrap intervals and permutation p-values. Which probe predicts control best is the question
# the paper leaves open.

# %%
correlations = bb.correlations_by_benchmark(table, probes)
display(correlations.round(3))
flat = bb.constant_probes(probes, table.loc[table["init"] == "pretrained", "backbone"].unique())
if flat:
    print("same score for every backbone (no correlation defined):", ", ".join(flat))
for benchmark in benchmarks:
    rows = table[(table["init"] == "pretrained") & (table["benchmark"] == benchmark)].set_index("backbone")
    success = rows["success"]
    by_seed = rows["seeds"] >= 2
    bars = pd.DataFrame({"low": rows["seed_ci_low"].where(by_seed, rows["pooled_ci_low"]),
                         "high": rows["seed_ci_high"].where(by_seed, rows["pooled_ci_high"])})
    columns = [c for c in probes.columns if c in set(correlations.loc[correlations["benchmark"] == benchmark, "probe"])]
    if not columns:
        print(f"{benchmark}: no correlation panel (fewer than 3 backbones with probe scores, "
              "or the same success for all of them)")
        continue
    n_cols = min(4, len(columns))
    n_rows = -(-len(columns) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4 * n_cols, 3.4 * n_rows), squeeze=False)
    for ax, probe in zip(axes.flat, columns):
        plots.capability_scatter(success, probes[probe], title=f"{benchmark}: {probe.removeprefix('probe_')}", ax=ax,
                                 interval=bars)
    for ax in list(axes.flat)[len(columns):]:
        ax.set_visible(False)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# Does a backbone's rank on one benchmark carry over to the other? (The paper finds the capability /
# control relation changes sign between CALVIN and Simpler / LIBERO.)

# %%
transfer = bb.cross_benchmark(table)
transfer.round(3) if len(transfer) else print("no cross-benchmark correlation: fewer than 3 backbones run on two benchmarks, "
                                                        "or one benchmark gives them all the same success")

# %% [markdown]
# ## Per-task profile (the paper's teaser radar) and execution length / checkpoint selection
# "Fixed k" is the pre-registered rule (the whole chunk, final checkpoint); "best of" picks the best
# k, and the best (k, checkpoint), after seeing the results, as the paper does: the difference is the
# optimism of that selection. The sweep (every k, one earlier checkpoint at the first k) runs on the
# seed-0 run of each backbone only (budget), so this table compares the rules on those runs.

# %%
fig, axes = plt.subplots(1, len(benchmarks), figsize=(7 * len(benchmarks), 6), squeeze=False,
                         subplot_kw={"projection": "polar"})
for ax, benchmark in zip(axes.flat, benchmarks):
    plots.radar(bb.task_profile(fixed[fixed["benchmark"] == benchmark]), ax=ax)
    ax.set_title(benchmark, pad=20)
fig.tight_layout()
early = pd.concat([load_early_checkpoints(root, prefix) for prefix in run_prefixes], ignore_index=True)
selection = bb.selection_effect(episodes, early)
selection.round(3)

# %% [markdown]
# ## Conclusion (computed from the numbers above)

# %%
lines = bb.conclusions(table, gaps, correlations)
lines += against_blind(table, references)
lines += bb.fit_lines(fit_corr)
lines += bb.convergence_lines(finished)
tied = bb.one_above_ties(table)
for row in transfer[transfer["method"] == "spearman"].itertuples():
    sure = bb.how_sure(row.ci_low, row.ci_high, row.p_value, coefficient=row.coefficient,
                       one_above_ties=any(benchmark in tied for benchmark in row.benchmarks.split(" vs ")))
    lines.append(f"Backbone ranking across benchmarks ({row.benchmarks}): Spearman {row.coefficient:+.2f} (95% CI "
                 f"[{row.ci_low:+.2f}, {row.ci_high:+.2f}], permutation p = {row.p_value:.2g}, n = {row.n}); {sure}.")
display(Markdown("\n".join(f"- {line}" for line in lines)))

# %%
best = bb.best_predictor(correlations[correlations["benchmark"] == "metaworld"])
general = correlations.query("probe == 'general_vqa_accuracy' and method == 'spearman'").set_index("benchmark")["coefficient"]
write_metrics(metrics_path, {
    "runs": episodes["run"].nunique(),
    **{f"best_backbone_{b}": g.iloc[0]["backbone"] for b, g in table[table["init"] == "pretrained"].groupby("benchmark")},
    **{f"best_success_{b}": float(g["success"].max()) for b, g in table[table["init"] == "pretrained"].groupby("benchmark")},
    "mean_init_gap": float(gaps["gap"].mean()) if len(gaps) else float("nan"),
    **{f"spearman_general_vqa_{b}": float(r) for b, r in general.items()},
    "best_predictor": best["probe"] if best is not None else "none",
    "mean_selection_optimism": float(selection["optimism"].mean()),
})
