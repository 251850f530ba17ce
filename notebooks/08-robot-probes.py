# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Robot probes: what each backbone knows about robot frames before any policy is trained
#
# The paper asks which VLM capability predicts VLA performance; general VQA is one candidate
# (notebook 01). Here every stored backbone (the zoo with its from-scratch member, the control-supervision
# backbones of finding 4 and the auxiliary fine-tunes of finding 2) gets the robot probes of
# `vlm4vla.probes`, on frames of the demonstration store, scored against simulator ground truth:
#
# - **embodied VQA** (zero-shot): pointing error in pixels (lower is better, answered by generation),
#   depth order, left/right and above/below relation, gripper open/closed (two options each, answered by
#   ranking: the option with the higher log-likelihood), each with its chance level. The zoo never saw a
#   robot frame nor these questions, so scores near chance are expected. `generated` in the reference
#   table is the exact-match accuracy of the free answer, which stays near 0 for a model that never
#   learned the answer format (the reason the two-option questions are ranked).
# - **linear probes** of the frozen vision features (the image tokens entering the language model):
#   ridge R^2 on held-out episodes for end-effector position, object position and gripper state, next
#   to the same probe on raw pixels and on a random-init twin of the same architecture.
#
# How much a probe owes to pretraining: the from-scratch zoo member (same architecture as
# `qwen-s-long`, random weights) for every probe, and each backbone's own random-init twin for the
# linear probes. Finding 1 (notebook 03) correlates these scores with VLA success.
# One JSON per backbone is kept under `artifacts/robot-probes/<group>/`; a re-run reuses every
# result whose backbone, store, probe config and probe code are unchanged.

# %% tags=["parameters"]
roots = ["artifacts/zoo", "artifacts/control-supervision", "artifacts/auxiliary-vlms"]
demos_dir = "artifacts/demonstrations"
embodied_qa = {"n_per_kind": 200, "seed": 0}
linear = {"max_frames": 1500, "n_boot": 1000, "pixel_size": 16, "seed": 0}
batch_size = 32
random_twin = True
threads = 1
out_dir = "artifacts/robot-probes"
metrics_path = "artifacts/metrics/08-robot-probes.json"

# %%
import torch
from IPython.display import display

from vlm4vla.analysis import robot_probes as rp
from vlm4vla.data.demos import DemoStore
from vlm4vla.pipeline.notebook import repo_path, write_metrics

torch.set_num_threads(threads)
cfg = rp.make_probe_config(embodied_qa, linear, batch_size, random_twin)  # validated before any work
store = DemoStore.open(repo_path(demos_dir))
members = rp.find_members([repo_path(r) for r in roots])
groups = list(dict.fromkeys(m.group for m in members))
print(f"{len(members)} backbones in {groups}; {len(store)} frames of {len(store.episodes)} episodes")

# %% [markdown]
# ## Probe every backbone (results reused where nothing they depend on changed)

# %%
status = rp.probe_backbones(members, store, cfg, repo_path(out_dir))
status

# %% [markdown]
# ## Scores per backbone, with 95% intervals
# Embodied probes: Wilson intervals (accuracies) or t-intervals (pointing error, pixels).
# Linear probes: percentile bootstrap over held-out episodes, resampled within each task.

# %%
probes = rp.load_all(repo_path(out_dir), groups)
rp.score_table(probes)

# %%
rp.plot_probe_scores(probes);

# %% [markdown]
# ## Against the reference points
# `chance`: majority answer (accuracies) or a uniformly random point (pointing). `pixels`: the same
# ridge probe on 16 x 16 downsampled raw pixels. `random_init`: the same probe on the features of a
# random-init twin; `gain_over_random_init` is what pretraining (and fine-tuning) added to the vision features.

# %%
references = rp.reference_table(probes)
display(references.pivot_table(index=["group", "name"], columns="probe", values="gain_over_random_init").round(3))
references.round(3)

# %%
zoo = probes.loc["zoo"] if "zoo" in groups else probes.iloc[:0]
headline = {"n_backbones": len(status), "n_computed": int(status["computed"].sum()),
            "mean_probe_seconds": float(status["seconds"].mean())}
headline |= {f"{col}/{name}": row[col] for name, row in zoo.iterrows() for col in rp.ROBOT_PROBE_SCORES if col in zoo}
write_metrics(metrics_path, headline)
headline
