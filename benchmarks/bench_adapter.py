"""Throughput of the VLM4VLA adapter: training samples/s per family (CPU), policy steps/s, and on a
GPU one training step of a full-size architecture built from its published config (random weights).

    .venv/bin/python benchmarks/bench_adapter.py                      # CPU: every family, 64 px
    .venv/bin/python benchmarks/bench_adapter.py --families idefics3 --closed-loop   # + harness steps/s
    .venv/bin/python benchmarks/bench_adapter.py --full-size qwen2_5_vl_3b --batch 16   # GPU, bf16

Prints one JSON object (also written to --out). "fraction of peak" divides the FLOP rate of the
training step (FLOPs counted by torch's FlopCounterMode over forward + backward) by the measured
rate of a large matmul in the same dtype on the same device and threads ("measured matmul peak");
on CUDA, MFU is also given against the vendor's dense bf16 peak (--peak-tflops).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from vlm4vla.adapter import HeadConfig, VLAPolicy, fit_conventions, make_adapter
from vlm4vla.backbones.base import Backbone, BackboneConfig
from vlm4vla.backbones.registry import get_family, supported_families
from vlm4vla.backbones.tokenizer import train_tokenizer
from vlm4vla.constants import INSTRUCTION, OBS_IMAGE
from vlm4vla.data.chunks import ARM_TARGET, GRIPPER_TARGET
from vlm4vla.envs.instructions import PARAPHRASES
from vlm4vla.train import make_run_config
from vlm4vla.train.loop import make_accelerator
from vlm4vla.train.step import TrainState, build_backbone, make_optimizer, train_step

INSTRUCTIONS = sorted({p for phrases in PARAPHRASES.values() for p in phrases})
H100_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H100 SXM datasheet, dense (no sparsity); H200 the same
# Published architectures (config.json of Qwen/Qwen2.5-VL-3B-Instruct and google/paligemma-3b-pt-224).
FULL_SIZE: dict[str, dict[str, Any]] = {
    "qwen2_5_vl_3b": {"family": "qwen2_vl", "image_size": 224, "text": dict(
        hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
        num_key_value_heads=2, vocab_size=151936, rope_parameters={
            "rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}),
        "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14,
                       out_hidden_size=2048, window_size=112, fullatt_block_indexes=[7, 15, 23, 31])},
    "paligemma_3b": {"family": "paligemma", "image_size": 224, "top": dict(projection_dim=2048), "text": dict(
        hidden_size=2048, intermediate_size=16384, num_hidden_layers=18, num_attention_heads=8,
        num_key_value_heads=1, head_dim=256, vocab_size=257216),
        "vision": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                       patch_size=14, image_size=224, projection_dim=2048)},
}


def full_size_backbone(name: str, device: str | torch.device = "meta", dtype: torch.dtype = torch.bfloat16) -> Backbone:
    """A random-weight backbone of a published architecture; our small tokenizer, the real vocab size."""
    spec = FULL_SIZE[name]
    family = get_family(spec["family"])
    tokenizer = train_tokenizer(INSTRUCTIONS, 1024, family.special_tokens)
    base = BackboneConfig(family=spec["family"], hidden_size=64, heads=4, image_size=spec["image_size"], patch_size=14)
    config = family.build_config(base, tokenizer)
    for section, target in (("text", config.get_text_config()), ("vision", config.vision_config), ("top", config)):
        for key, value in spec.get(section, {}).items():
            setattr(target, key, value)
    text = config.get_text_config()
    if getattr(text, "layer_types", None):  # derived from the layer count at config creation
        text.layer_types = [text.layer_types[0]] * text.num_hidden_layers
    with torch.device(device):
        model = family.model_class._from_config(config, dtype=dtype)
    return Backbone(family, model.eval(), tokenizer, spec["image_size"], {"init": f"random, {name} architecture"})


def synthetic_batch(batch: int, size: int, chunk: int, seed: int = 0) -> dict[str, Any]:
    """Random images, instructions of the study and targets in [-1, 1] / {0, 1}."""
    rng = np.random.default_rng(seed)
    return {OBS_IMAGE: torch.from_numpy(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)),
            INSTRUCTION: [INSTRUCTIONS[i] for i in rng.integers(len(INSTRUCTIONS), size=batch)],
            ARM_TARGET: torch.from_numpy(rng.uniform(-1, 1, (batch, chunk, 3)).astype(np.float32)),
            GRIPPER_TARGET: torch.from_numpy((rng.random((batch, chunk)) > 0.5).astype(np.float32))}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn`` over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync()
        t = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def matmul_peak(device: str, dtype: torch.dtype, n: int) -> float:
    """Measured FLOP/s of an n x n matmul (the 'measured matmul peak')."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / timed(lambda: a @ b, repeats=10)


def step_flops(state: TrainState, batch: dict[str, Any]) -> float:
    """FLOPs of one training step (forward + backward), counted by FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        train_step(state, batch)
    return float(counter.get_total_flops())


def bench_training(backbone: Backbone, cfg: Any, batch: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Samples/s, tokens/s and FLOP rate of ``train_step`` for one backbone."""
    accelerator = make_accelerator(cfg.train)
    adapter = make_adapter(backbone, cfg.head).to(accelerator.device).train()
    model, optimizer = accelerator.prepare(adapter, make_optimizer(adapter, cfg.train))
    state = TrainState(0, model, optimizer, accelerator, cfg)
    tokens = adapter.encode(batch[OBS_IMAGE][:1], batch[INSTRUCTION][:1])["input_ids"].shape[1]
    seconds = timed(lambda: train_step(state, batch), repeats)
    flops = step_flops(state, batch)
    n = len(batch[INSTRUCTION])
    return {"family": backbone.family, "parameters": backbone.n_parameters(), **adapter.new_parameters(),
            "batch": n, "tokens_per_sample": tokens, "step_s": seconds, "samples_per_s": n / seconds,
            "tokens_per_s": n * tokens / seconds, "step_flops": flops, "flops_per_s": flops / seconds}


def bench_policy(backbone: Backbone, head: HeadConfig, size: int, batches: tuple[int, ...], repeats: int) -> dict[str, float]:
    """Policy calls/s and the env steps/s they allow at k = N and k = 1 (policy time only)."""
    policy = VLAPolicy(make_adapter(backbone, head), fit_conventions(np.random.uniform(-1, 1, (100, 4))))
    out = {}
    for b in batches:
        batch = synthetic_batch(b, size, head.chunk_size)
        obs = {OBS_IMAGE: batch[OBS_IMAGE].numpy(), INSTRUCTION: batch[INSTRUCTION]}
        seconds = timed(lambda: policy.act(obs), repeats)
        out[f"act_batch{b}_per_s"] = 1 / seconds
        out[f"env_steps_per_s_batch{b}_k1"] = b / seconds
        out[f"env_steps_per_s_batch{b}_k{head.chunk_size}"] = b * head.chunk_size / seconds
    return out


def bench_closed_loop(backbone: Backbone, head: HeadConfig, episodes: int, max_steps: int) -> dict[str, float]:
    """Environment steps/s of the evaluation harness with this (untrained) policy, smoke suite, 64 px."""
    from vlm4vla.envs import make_suite_config
    from vlm4vla.evaluate import EvalConfig, evaluate

    policy = VLAPolicy(make_adapter(backbone, head), fit_conventions(np.random.uniform(-1, 1, (100, 4))))
    out = {}
    for k in sorted({head.chunk_size, 1}, reverse=True):
        cfg = EvalConfig(episodes_per_task=episodes, execute_k=k, max_steps=max_steps)
        out[f"closed_loop_env_steps_per_s_k{k}"] = evaluate(policy, make_suite_config("smoke"), cfg)["steps_per_s"]
    return out


def run_cpu(args: argparse.Namespace) -> dict[str, Any]:
    """Every family at the pilot's tiny size, 64 px, float32 on CPU."""
    torch.set_num_threads(args.threads)
    cfg = make_run_config({"batch_size": args.batch, "mixed_precision": "no"})
    peak = matmul_peak("cpu", torch.float32, 1024)
    rows = []
    for family in args.families:
        backbone = build_backbone(replace(cfg.backbone, source=f"scratch:{family}:tiny"), 0)
        row = bench_training(backbone, cfg, synthetic_batch(args.batch, 64, cfg.head.chunk_size), args.repeats)
        row["fraction_of_matmul_peak"] = row["flops_per_s"] / peak
        row.update(bench_policy(backbone, cfg.head, 64, (1, 8), args.repeats))
        if args.closed_loop:
            row.update(bench_closed_loop(backbone, cfg.head, episodes=2, max_steps=60))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"device": "cpu", "threads": args.threads, "matmul_peak_flops": peak, "families": rows}


def run_full_size(args: argparse.Namespace) -> dict[str, Any]:
    """One adapter training step of a full-size architecture in bf16 (CUDA expected)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    backbone = full_size_backbone(args.full_size, device=device)
    head = HeadConfig(chunk_size=args.chunk)
    cfg = make_run_config({"batch_size": args.batch, "chunk": args.chunk, "mixed_precision": "auto"})
    row = bench_training(backbone, cfg, synthetic_batch(args.batch, 224, head.chunk_size), args.repeats)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    peak = matmul_peak(device, dtype, 8192 if device == "cuda" else 1024)
    row.update(architecture=args.full_size, device=torch.cuda.get_device_name() if device == "cuda" else "cpu",
               matmul_peak_flops=peak, fraction_of_matmul_peak=row["flops_per_s"] / peak,
               mfu=row["flops_per_s"] / (args.peak_tflops * 1e12) if device == "cuda" else None,
               max_memory_gib=torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-size", choices=sorted(FULL_SIZE), help="GPU: a full-size architecture instead of the CPU sweep")
    parser.add_argument("--families", nargs="+", default=supported_families())
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)  # 2 threads on a shared 2-core box: OpenMP spin contention, 5x slower
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS)
    parser.add_argument("--closed-loop", action="store_true", help="also time the evaluation harness (smoke suite)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = run_full_size(args) if args.full_size else run_cpu(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
