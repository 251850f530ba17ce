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
# # 04 · Finding 2, step 1: VLMs fine-tuned on auxiliary embodied tasks
#
# The paper (STUDY.md, finding 2) fine-tunes the VLM on one of seven embodied datasets (RoboPoint,
# Vica-332k, BridgeVQA, Robo2VLM, RoboBrain 2.0, Omni-Generation, VQA-Mix) and only then trains the
# VLA; the VLA does not improve. This notebook builds our analogues (`vlm4vla.data.auxiliary`: every
# label is simulator ground truth), fine-tunes every base x task (`vlm4vla.backbones.auxiliary`), and
# checks that each fine-tune learnt its own skill (held-out episodes) and what it did to general VQA.
# The saved `<base>-aux-<task>` backbones are the starting points of the finding-2 VLA runs.
#
# Frames: a separate auxiliary store (its own seed). Meta-World's 50 variations per task are all
# taken (0-29 train, 30-49 evaluation), so the auxiliary episodes start from *train* variations: they
# share initial states with the policy's demonstrations, never with evaluation.
# `dense` is simplified: a 4x4 grid of depth levels / segmentation classes as digits, not full maps.

# %% tags=["parameters"]
bases = ["qwen-s-long", "idefics3-s-long"]
tasks = ["pointing", "rgbd_spatial", "spatial_vqa", "action_vqa", "planning", "dense", "vqa_mix"]
aux = {"steps": 300, "batch_size": 16, "lr": 3e-4, "vqa_ratio": 0.3, "n_items": 4000, "seed": 0}
aux_demos = {"episodes_per_task": 5, "seed": 7}
suite = {"preset": "mt10-vision", "image_size": 64}
zoo_dir = "artifacts/zoo"
n_probe = 200
threads = 1
out_dir = "artifacts/auxiliary-vlms"
metrics_path = "artifacts/metrics/04-auxiliary-vlms.json"

# %%
import json

import matplotlib.pyplot as plt
import pandas as pd
import torch

from vlm4vla.backbones.auxiliary import AuxConfig, auxiliary_examples, run_auxiliary
from vlm4vla.backbones.control_supervision import stage1_histories
from vlm4vla.backbones.zoo_plots import plot_pretraining_curves
from vlm4vla.data.auxiliary import make_auxiliary, split_episodes
from vlm4vla.data.corpus import load_corpus
from vlm4vla.data.demos import DemoConfig, DemoStore, generate_demonstrations
from vlm4vla.envs import make_suite_config
from vlm4vla.pipeline.notebook import repo_path, write_metrics

torch.set_num_threads(threads)
settings = dict(suite)
suite_cfg = make_suite_config(settings.pop("preset"), **settings)
demo_cfg = DemoConfig(**aux_demos)
configs = [AuxConfig(task=task, **aux, progress=False) for task in tasks]  # validated before any work
out = repo_path(out_dir)
train = load_corpus(repo_path(zoo_dir) / "corpus" / "train")
heldout = load_corpus(repo_path(zoo_dir) / "corpus" / "heldout")

# %% [markdown]
# ## The auxiliary store (expert episodes on the train variations, seed of `aux_demos`)

# %%
store_dir = out / "aux-demos"
meta = json.loads((store_dir / "meta.json").read_text()) if (store_dir / "meta.json").is_file() else {}
if meta.get("demos") != dict(demo_cfg.__dict__) or meta.get("suite") != suite_cfg.as_dict():
    generate_demonstrations(suite_cfg, demo_cfg, store_dir)
store = DemoStore.open(store_dir)
pd.Series({"frames": len(store), "episodes": len(store.episodes), "train episodes": len(split_episodes(store, "train")),
           "held-out episodes": len(split_episodes(store, "heldout")),
           "variations": sorted(store.episodes["variation"].unique().tolist())})

# %% [markdown]
# ## Items per task: training items (train episodes) and probe items (held-out episodes)

# %%
items = {t: make_auxiliary(store, t, aux["n_items"], aux["seed"], split="train") for t in tasks}
probe_items = {t: make_auxiliary(store, t, n_probe, aux["seed"], split="heldout") for t in tasks}
pd.DataFrame({"train items": {t: len(v) for t, v in items.items()},
              "probe items": {t: len(v) for t, v in probe_items.items()},
              "question types": {t: ", ".join(sorted(v["kind"].unique())) for t, v in items.items()}})

# %%
shown = pd.concat([v.groupby("kind").head(1) for t, v in items.items() if t != "vqa_mix"], ignore_index=True)
fig, axes = plt.subplots(1, len(shown), figsize=(2.4 * len(shown), 3.2), squeeze=False)
for ax, it in zip(axes[0], shown.itertuples()):
    ax.imshow(store.frames[it.row])
    ax.set_title(f"{it.aux_task}/{it.kind}\n-> {it.answer}", fontsize=7)
    ax.set_axis_off()
fig.tight_layout()
shown[["aux_task", "kind", "prompt", "answer"]]

# %% [markdown]
# ## Fine-tuning every base x task, saved as `<base>-aux-<task>`

# %%
summaries = [run_auxiliary(repo_path(zoo_dir) / base, store, train, heldout, cfg, out, n_probe=n_probe)
             for base in bases for cfg in configs]
table = pd.DataFrame(summaries).set_index("name")
flat = table.reset_index()[["name", "base", "task", "skill_before", "skill_after", "skill_metric",
                            "skill_higher_is_better", "vqa_before", "vqa_after", "aux_loss_before", "aux_loss_after",
                            "freeze_variant", "n_train_items", "n_probe_items"]]
flat.to_csv(out / "summary.csv", index=False)  # read by the finding-2 analysis notebook
(out / "summary.json").write_text(flat.to_json(orient="records", indent=2) + "\n")
flat.set_index("name")

# %% [markdown]
# Own skill: accuracy / cell accuracy (higher is better) or pointing / waypoint error in pixels
# (lower is better; an unparsed answer counts as the image centre), on held-out episodes.

# %%
plot_pretraining_curves(stage1_histories(out, list(table.index)));

# %% [markdown]
# ## Example held-out questions, answers before and after

# %%
examples = auxiliary_examples(out, list(table.index))
for name, ex in examples.items():
    fig, axes = plt.subplots(1, min(len(ex), 4), figsize=(10, 3.2), squeeze=False)
    for ax, it in zip(axes[0], ex.head(4).itertuples()):
        ax.imshow(store.frames[it.row])
        ax.set_title(f"{it.kind}: {it.answer}\nbefore: {it.before}\nafter: {it.after}", fontsize=7)
        ax.set_axis_off()
    fig.suptitle(name, fontsize=9)
    fig.tight_layout()
pd.concat(examples, names=["name"])[["kind", "prompt", "answer", "before", "after"]]

# %%
headline = {"n_finetunes": len(table), "aux_frames": len(store)}
for name, row in table.iterrows():
    headline |= {f"{k}/{name}": row[k] for k in ("skill_before", "skill_after", "vqa_before", "vqa_after")}
write_metrics(metrics_path, headline)
headline
