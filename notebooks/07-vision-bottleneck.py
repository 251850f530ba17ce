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
# # Finding 3: is vision the bottleneck? Freezing ablations and control-relevant supervision
#
# **Placeholder stage.** This notebook is the pipeline's slot for the finding of issue #8; the
# analysis is not written yet. Until it is, it only lists the policy runs the pipeline produced and
# their headline metrics, so the pipeline runs end to end. Nothing below is a result of the study.

# %% tags=["parameters"]
out_dir = "artifacts/vision-bottleneck"
metrics_path = "artifacts/metrics/07-vision-bottleneck.json"

# %%
import pandas as pd

from vlm4vla.pipeline.notebook import read_metrics, write_metrics

runs = pd.DataFrame.from_dict(read_metrics("runs"), orient="index")
runs

# %%
write_metrics(metrics_path, {"runs_found": len(runs), "placeholder": True})
