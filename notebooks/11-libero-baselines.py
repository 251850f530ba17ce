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
# # 11 · Reference policies on the LIBERO runs' own evaluation episodes (Benchmark 2)
#
# What `10-baselines` does for Meta-World, on LIBERO: the **null** policy (no motion, gripper open), the
# **blind replay** (a training demonstration's 7-D actions replayed without looking) and the scripted
# **expert** (the ceiling; it reads object poses from the simulator), evaluated by the same harness with
# the LIBERO runs' evaluation settings (`libero_training`: same suite, official initial states, seed and
# episode count, checked by a test), so finding 1 can put them next to each LIBERO task.
# Where LIBERO was not recorded (`libero_demonstrations` left a note instead, as in CI's smoke profile),
# this stage says so and writes no baselines.

# %% tags=["parameters"]
suite = {"preset": "libero_object", "tasks": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "image_size": 64}
evaluation = {"episodes_per_task": 10, "init_states": [40, 50], "seed": 1000}  # as libero_training's, checked by a test
demos_dir = "artifacts/libero-demonstrations"
out_dir = "artifacts/libero-baselines"
metrics_path = "artifacts/metrics/11-libero-baselines.json"

# %%
import json
import os

from IPython.display import Markdown, display

from vlm4vla.data.demos import DemoStore
from vlm4vla.envs.libero_demos import NOT_RECORDED
from vlm4vla.envs.libero_eval import (LiberoBlindReplayPolicy, LiberoEvalConfig, LiberoExpertPolicy, LiberoNullPolicy,
                                      LiberoSuite, evaluate_libero)
from vlm4vla.evaluate import success_table
from vlm4vla.pipeline.notebook import repo_path, write_metrics

suite_cfg = LiberoSuite(suite=suite["preset"], **{k: v for k, v in suite.items() if k != "preset"})
eval_cfg = LiberoEvalConfig(**evaluation)
note = repo_path(demos_dir) / NOT_RECORDED
store = None if note.exists() else DemoStore.open(repo_path(demos_dir))
if store is None:
    display(Markdown(note.read_text() + "\nNo LIBERO baselines are computed in this profile."))
suite_cfg, eval_cfg

# %% [markdown]
# ## Null, blind replay and expert on the held-out official initial states

# %%
results = {}
if store is not None:
    blind = LiberoBlindReplayPolicy.from_store(store, suite_cfg.step_limit, seed=eval_cfg.seed)
    policies = {"null": (LiberoNullPolicy(), eval_cfg),
                "blind replay": (blind, LiberoEvalConfig(**{**evaluation, "execute_k": blind.chunk_size})),
                "expert": (LiberoExpertPolicy(), eval_cfg)}
    results = {name: evaluate_libero(policy, suite_cfg, cfg) for name, (policy, cfg) in policies.items()}
    table = success_table(results)
    table.index = [t.removeprefix("pick_up_the_").split("_and_place")[0].replace("_", " ") for t in table.index]
    display(table.style.format("{:.0%}"))

# %%
out = repo_path(out_dir)
out.mkdir(parents=True, exist_ok=True)
tmp = out / ".baselines.json.tmp"
tmp.write_text(json.dumps(results, indent=1, default=str) + "\n")
os.replace(tmp, out / "baselines.json")
write_metrics(metrics_path, {"recorded": store is not None,
                             **{f"{name.replace(' ', '_')}_success": r["mean_success"] for name, r in results.items()}})
