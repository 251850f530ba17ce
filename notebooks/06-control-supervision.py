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
# # 06 · Finding 4, stage 1: control-relevant supervision of the VLM
#
# The paper (STUDY.md, finding 4) fine-tunes the VLM on next-token prediction of robot actions
# written as FAST tokens (DCT of the action chunk, quantised, byte-pair encoded; Pertsch et al. 2025),
# mixed with general VQA, either with the vision encoder trained or frozen. Stage 2 (the usual VLA
# training, notebook 02) then starts from these backbones; the paper reads the Simpler gain
# (56.3 -> 59.4 %, and 27.6 -> 45.7 % with vision frozen in stage 2) as control supervision closing
# part of a "semantic gap" in the visual features. This notebook builds the stage-1 backbones:
# it fits FAST on the demonstrations, checks its round trip, fine-tunes each base x variant and
# checks that general VQA survives.

# %% tags=["parameters"]
bases = ["qwen-s-long"]
control = {"steps": 8000, "batch_size": 16, "lr": 1e-3, "vqa_ratio": 0.5, "fast_vocab": 512, "seed": 0}
variants = ["freeze_vision", "none"]
n_probe = 300
n_random = 2000
threads = 1
zoo_dir = "artifacts/zoo"
demos_dir = "artifacts/demonstrations"
out_dir = "artifacts/control-supervision"
metrics_path = "artifacts/metrics/06-control-supervision.json"

# %%
import dataclasses

import pandas as pd
import torch

from vlm4vla.backbones.control_supervision import ControlConfig, fast_round_trip, fit_fast, run_stage1, stage1_histories
from vlm4vla.backbones.zoo_plots import plot_pretraining_curves
from vlm4vla.data.corpus import load_corpus
from vlm4vla.data.demos import DemoStore
from vlm4vla.data.fast import FastConfig, action_chunks
from vlm4vla.pipeline.notebook import repo_path, write_metrics

torch.set_num_threads(threads)
settings = dict(control)
fast_cfg = FastConfig(vocab_size=settings.pop("fast_vocab"))
base_cfg = ControlConfig(**settings, fast=fast_cfg, progress=False)  # history below logs the loss
store = DemoStore.open(repo_path(demos_dir))
train = load_corpus(repo_path(zoo_dir) / "corpus" / "train")
heldout = load_corpus(repo_path(zoo_dir) / "corpus" / "heldout")
out = repo_path(out_dir)

# %% [markdown]
# ## FAST fitted on every demonstration chunk (N = 4, the adapter's chunk)
#
# Worst case |error| is sqrt(N) x 0.5 / scale (column `bound`); uniform random chunks show the
# rounding error without structure, and that BPE cannot compress noise.

# %%
fast = fit_fast(store, fast_cfg)
fast.save(out / "fast")
round_trip = fast_round_trip(fast, store, n_random=n_random, seed=base_cfg.seed)
round_trip

# %%
example = action_chunks(store, fast_cfg.chunk_size)[0]
pd.DataFrame(example, columns=["dx", "dy", "dz", "gripper"]).assign(fast=[fast.encode_text(example), "", "", ""])

# %% [markdown]
# ## Stage 1: each base x variant, saved as `<base>-fast-<variant>` (loadable like a zoo member)

# %%
summaries = [run_stage1(repo_path(zoo_dir) / base, store, train, heldout, dataclasses.replace(base_cfg, freeze=variant),
                        fast, out, n_probe=n_probe)
             for base in bases for variant in variants]
table = pd.DataFrame(summaries).set_index("name")
table[["base", "freeze", "trainable", "frozen", "control_loss_before", "control_loss_after",
       "general_loss_before", "general_loss_after", "vqa_accuracy_before", "vqa_accuracy_after"]]

# %%
plot_pretraining_curves(stage1_histories(out, list(table.index)));

# %%
headline = {"fast_max_abs_error": round_trip.loc["demonstrations", "max_abs_error"],
            "fast_rms_error": round_trip.loc["demonstrations", "rms_error"],
            "fast_mean_tokens": round_trip.loc["demonstrations", "mean_tokens"],
            "fast_vocab_size": fast.vocab_size}
for name, row in table.iterrows():
    headline |= {f"{k}/{name}": row[k] for k in ("control_loss_after", "general_loss_after",
                                                 "vqa_accuracy_before", "vqa_accuracy_after")}
write_metrics(metrics_path, headline)
headline
