"""Does a longer stage 1 (finding 4's FAST control supervision) learn to use the image?

    nice .venv/bin/python benchmarks/stage1_image_use.py [--variant none] [--block 500] [--blocks 8]
        [--batch 16] [--lr 3e-4] [--vqa-ratio 0.5] [--base artifacts/zoo/qwen-s-long]

The default profile's first stage 1 (600 steps at lr 3e-4) left the FAST action-token loss where the
instruction alone would put it, and shuffling the images among the items cost nothing (07-vision-bottleneck's
manipulation check); this script chose the present budget (8000 steps at lr 1e-3, RESULTS.md). It runs the same stage 1 on the default profile's demonstrations and
corpus in blocks of ``--block`` steps and prints, after each block, the control loss on 128
demonstration frames with their own images and with the images shuffled, and the share of the loss
stage 1 removed that the image accounts for. It needs ``artifacts/demonstrations`` and
``artifacts/zoo`` (``make repro`` builds them). Each block restarts the optimiser (20 warm-up steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from vlm4vla.analysis.vision import control_corpora, image_share, text_only_loss
from vlm4vla.backbones.base import load_backbone
from vlm4vla.backbones.control_supervision import (CONTROL_QTYPE, ControlConfig, add_fast_tokens, finetune_on_mix,
                                                   fit_fast, item_losses, mixed_corpus)
from vlm4vla.data.corpus import load_corpus
from vlm4vla.data.demos import DemoStore
from vlm4vla.data.fast import FastConfig, action_chunks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="none", choices=["none", "freeze_vision"])
    p.add_argument("--block", type=int, default=500)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--vqa-ratio", type=float, default=0.5)
    p.add_argument("--base", default="artifacts/zoo/qwen-s-long")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    store = DemoStore.open("artifacts/demonstrations")
    cfg = ControlConfig(steps=args.block, batch_size=args.batch, lr=args.lr, vqa_ratio=args.vqa_ratio, freeze=args.variant,
                        progress=False, fast=FastConfig(vocab_size=512))
    fast = fit_fast(store, cfg.fast)
    backbone = load_backbone(args.base)
    add_fast_tokens(backbone, fast)
    mix = mixed_corpus(store, load_corpus("artifacts/zoo/corpus/train"), fast, cfg.vqa_ratio, cfg.general_recipe, cfg.seed)
    own, shuffled = control_corpora(store, fast)
    reference = text_only_loss([fast.encode(c) for c in action_chunks(store, cfg.fast.chunk_size)],
                               list(store.table["instruction"]))
    before = item_losses(backbone, own, (CONTROL_QTYPE,), n=128)
    print(f"{args.base} stage 1 {args.variant}, batch {args.batch}, lr {args.lr:g}, vqa_ratio {args.vqa_ratio}: control loss before "
          f"{before:.3f}, text-only reference {reference:.3f} (nats per token)", flush=True)
    print("| steps | own image | shuffled images | image share of the learnt loss | seconds |\n| --- | --- | --- | --- | --- |")
    start = time.perf_counter()
    for block in range(args.blocks):
        finetune_on_mix(backbone, mix, args.variant, dataclasses.replace(cfg, seed=block).pretrain_config())
        with_image, without = (item_losses(backbone, c, (CONTROL_QTYPE,), n=128) for c in (own, shuffled))
        print(f"| {(block + 1) * args.block} | {with_image:.3f} | {without:.3f} | {image_share(before, with_image, without):.1%} | "
              f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
