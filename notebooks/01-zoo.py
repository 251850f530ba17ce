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
# # 01 · The VLM zoo: backbones of four families whose general skill differs widely
#
# The paper compares VLA policies built on real VLMs (Qwen2.5-VL, PaliGemma, Kosmos-2, ...) and asks
# whether a VLM's general VQA score predicts its VLA performance. Here the zoo is built from scratch
# on CPU: each member is a transformers VLM class (Qwen2.5-VL, PaliGemma, Idefics3/SmolVLM, LLaVA)
# at a small size, pretrained on a procedural general-domain corpus (shapes, colours, counts,
# relations) with its own budget and recipe, plus a random-init `scratch` twin. Pretraining starts on
# single-object scenes (a curriculum): from scratch, without it, the models learned the answer priors and
# ignored the image (held-out loss unchanged when images were shuffled across the batch). This notebook builds
# the zoo and measures the x-axis of the study: general VQA accuracy on held-out scenes.

# %% tags=["parameters"]
zoo = "default"
corpus = {"n_train": 2000, "n_heldout": 300, "questions_per_image": 3, "image_size": 64, "seed": 0}
n_probe = 300
threads = 1
workers = 2  # members built in parallel processes of one torch thread each (2 cores)
out_dir = "artifacts/zoo"
metrics_path = "artifacts/metrics/01-zoo.json"

# %%
import torch

from vlm4vla.backbones.zoo import (ZOO_SUMMARY, build_zoo, get_zoo, twin_gaps, write_zoo_summary, zoo_answers,
                                  zoo_histories, zoo_table)
from vlm4vla.backbones.zoo_plots import plot_pretraining_curves, plot_vqa_by_type, show_answers, vqa_table
from vlm4vla.data.corpus import CorpusConfig, make_corpus
from vlm4vla.pipeline.notebook import repo_path, write_metrics

torch.set_num_threads(threads)
zoo_dir = repo_path(out_dir)

# %% [markdown]
# ## The general corpus (train / held-out scenes, deterministic from the seed)

# %%
splits = make_corpus(CorpusConfig(**corpus))
splits.save(zoo_dir / "corpus")
splits.train.items.groupby(["kind", "qtype"]).size().rename("items").to_frame()

# %% [markdown]
# ## Pretrain every member, probe general VQA on held-out scenes, save checkpoint + card

# %%
specs = get_zoo(zoo)
names = [spec.name for spec in specs]
summaries = build_zoo(specs, splits, zoo_dir, n_probe=n_probe, workers=workers)
table = zoo_table(zoo_dir, names)
write_zoo_summary(table, repo_path(ZOO_SUMMARY))  # what finding 1 reads, kept in git
vqa_table(table)

# %% [markdown]
# ## Every pretrained member against its random-init twin (same architecture and seed, no pretraining)
# `beats_twin`: the pretrained member's 95% interval lies wholly above the twin's.

# %%
gaps = twin_gaps(table)
gaps

# %%
plot_pretraining_curves(zoo_histories(zoo_dir, names));

# %%
plot_vqa_by_type(table);

# %% [markdown]
# ## What they answer (held-out scenes)

# %%
show_answers(splits.heldout, zoo_answers(zoo_dir, names), k=6);

# %%
headline = {f"vqa_accuracy/{row.name}": row.vqa_accuracy for row in table.itertuples()}
headline |= {"vqa_accuracy_spread": table.vqa_accuracy.max() - table.vqa_accuracy.min(), "n_backbones": len(table),
             "min_gap_to_twin": gaps.gap.min(), "all_beat_twin": bool(gaps.beats_twin.all())}
write_metrics(metrics_path, headline)
headline
