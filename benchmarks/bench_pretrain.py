"""Pretraining throughput per VLM family at 64 px, and the fraction of this machine's matmul peak.

    nice .venv/bin/python benchmarks/bench_pretrain.py [--threads 2] [--steps 10] [--batch 16]

Method. Peak: best FLOP/s of a float32 1024x1024 matmul (2 n^3 FLOPs) on the same thread count.
Model FLOPs per training step: 6 x sum over parts of (parameters x tokens the part processes)
(forward 2, backward 4 per multiply-add): vision-encoder parameters x patches, projector
parameters x image tokens, language-model (+ LM head) parameters x sequence length, per sample.
Attention score / softmax FLOPs are left out (small at these lengths), so the fraction is a
slight underestimate. The machine's load average is printed: numbers taken on a shared machine
are only as good as it is quiet.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from vlm4vla.backbones.base import Backbone, BackboneConfig, make_backbone
from vlm4vla.backbones.pretrain import pretrain_step, recipe_items, sample_batch
from vlm4vla.backbones.registry import supported_families
from vlm4vla.data.corpus import Corpus, CorpusConfig, make_corpus


def matmul_peak(n: int = 1024, repeats: int = 10) -> float:
    """Best FLOP/s of an n x n float32 matmul."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flops_per_sample(backbone: Backbone, seq_len: int) -> float:
    """6 x (parameters x tokens) summed over vision, projector and language parts (see docstring)."""
    counts = backbone.groups.counts(backbone.model)
    patches = (backbone.image_size // backbone.model.config.vision_config.patch_size) ** 2
    lm = counts["language_model"] + (counts["lm_head"] or counts["word_embeddings"])  # tied: embeddings are the head
    return 6.0 * (counts["vision"] * patches + counts["projector"] * backbone.n_image_tokens + lm * seq_len)


def bench_family(family: str, corpus: Corpus, steps: int, batch: int) -> dict[str, float]:
    """Samples/s and achieved FLOP/s of ``steps`` pretraining steps (after 2 warm-up steps)."""
    backbone = make_backbone(BackboneConfig(family=family), corpus.texts())
    backbone.model.train()
    optimizer = torch.optim.AdamW(backbone.model.parameters(), lr=1e-4)
    rng, items = np.random.default_rng(0), recipe_items(corpus, "qa+captions")
    batches = [sample_batch(corpus, items, rng, batch) for _ in range(steps + 2)]
    for b in batches[:2]:
        pretrain_step(backbone, optimizer, b, 1.0)
    seq = np.mean([backbone.encode(*b)["input_ids"].shape[1] for b in batches[2:]])
    start = time.perf_counter()
    for b in batches[2:]:
        pretrain_step(backbone, optimizer, b, 1.0)
    seconds = time.perf_counter() - start
    samples_per_s = steps * batch / seconds
    return {"params_M": backbone.n_parameters() / 1e6, "seq_len": float(seq), "image_tokens": backbone.n_image_tokens,
            "samples_per_s": samples_per_s, "flops_per_s": samples_per_s * flops_per_sample(backbone, int(seq))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = make_corpus(CorpusConfig(n_train=200, n_heldout=10)).train
    peak = matmul_peak()
    print(f"threads {args.threads}, batch {args.batch}, 64 px, load average {os.getloadavg()[0]:.1f}; "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'family':<10} {'params':>7} {'seq':>5} {'img tok':>7} {'samples/s':>9} {'GFLOP/s':>8} {'of peak':>7}")
    for family in supported_families():
        r = bench_family(family, corpus, args.steps, args.batch)
        print(f"{family:<10} {r['params_M']:>6.2f}M {r['seq_len']:>5.0f} {r['image_tokens']:>7d} "
              f"{r['samples_per_s']:>9.1f} {r['flops_per_s'] / 1e9:>8.2f} {r['flops_per_s'] / peak:>7.1%}")


if __name__ == "__main__":
    main()
