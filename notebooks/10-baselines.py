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
# # 10 · Reference policies on the policies' own evaluation episodes
#
# Every success table of the findings puts two vision-free baselines next to each task: the **null**
# policy (no motion) and the **blind replay** (a training demonstration's actions replayed without
# looking), plus the scripted **expert** as the ceiling. They are evaluated here with the harness and the
# evaluation settings of the policy runs (`training.evaluation`: same held-out initial states, same
# seed, same episode count), so a policy's per-task success and its baselines count the same episodes.
# (`00-demonstrations` shows the same baselines on its own seed when the demonstrations are made.)

# %% tags=["parameters"]
suite = {"preset": "mt10-vision", "image_size": 64}
evaluation = {"episodes_per_task": 20, "seed": 1000}  # the same as training.evaluation, checked by a test
demos_dir = "artifacts/demonstrations"
out_dir = "artifacts/baselines"
metrics_path = "artifacts/metrics/10-baselines.json"

# %%
import json
import os

from vlm4vla.data.demos import DemoStore
from vlm4vla.envs import make_suite_config
from vlm4vla.evaluate import BlindReplayPolicy, EvalConfig, ExpertPolicy, NullPolicy, evaluate, success_table
from vlm4vla.pipeline.notebook import repo_path, write_metrics

suite_cfg = make_suite_config(suite["preset"], **{k: v for k, v in suite.items() if k != "preset"})
eval_cfg = EvalConfig(**evaluation)
store = DemoStore.open(repo_path(demos_dir))
blind = BlindReplayPolicy.from_store(store, seed=evaluation["seed"])
policies = {"null": (NullPolicy(), eval_cfg), "blind replay": (blind, EvalConfig(**evaluation, execute_k=blind.chunk_size)),
            "expert": (ExpertPolicy(), eval_cfg)}

# %%
results = {name: evaluate(policy, suite_cfg, cfg) for name, (policy, cfg) in policies.items()}
table = success_table(results)
table.style.format("{:.0%}")

# %%
out = repo_path(out_dir)
out.mkdir(parents=True, exist_ok=True)
tmp = out / ".baselines.json.tmp"
tmp.write_text(json.dumps(results, indent=1, default=str) + "\n")
os.replace(tmp, out / "baselines.json")
write_metrics(metrics_path, {f"{name.replace(' ', '_')}_success": r["mean_success"] for name, r in results.items()})
