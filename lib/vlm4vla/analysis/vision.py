"""Findings 3 and 4: is vision the bottleneck? Freezing ablations and control-relevant supervision.

Runs (``02-train-policy``): ``bb-<backbone>-pretrained-s<seed>`` is full fine-tuning,
``fz-<backbone>-<freeze>-s<seed>`` a freezing ablation, ``cs-<base>-<stage1>-<stage2>-s<seed>`` stage 2 on a
backbone after FAST control supervision (stage 1 with the vision encoder frozen or trained).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from vlm4vla import stats
from vlm4vla.constants import RUN_RESULTS_DIR

from .runs import compare_success, per_seed

FULL = "full"
STAGE1_LABELS = {"none": "stage 1, vision trained", "freeze_vision": "stage 1, vision frozen"}
STAGE2_LABELS = {FULL: "stage 2 vision trained", "freeze_vision": "stage 2 vision frozen"}


def condition_success(episodes: pd.DataFrame) -> pd.DataFrame:
    """Mean success per (backbone, freeze) over seeds with a t-interval and the pooled Wilson interval."""
    rows = []
    for (backbone, freeze), group in episodes.groupby(["backbone", "freeze"]):
        seeds = per_seed(group, ["backbone"])["success_rate"]
        mean, lo, hi = stats.mean_interval(seeds)
        w_lo, w_hi = stats.wilson_interval(int(group["successes"].sum()), int(group["n"].sum()))
        rows.append({"backbone": backbone, "freeze": freeze, "success": mean, "seed_ci_low": lo,
                     "seed_ci_high": hi, "pooled_ci_low": w_lo, "pooled_ci_high": w_hi, "seeds": len(seeds),
                     "seed_values": seeds.round(3).tolist()})
    return pd.DataFrame(rows, columns=["backbone", "freeze", "success", "seed_ci_low", "seed_ci_high", "pooled_ci_low",
                                       "pooled_ci_high", "seeds", "seed_values"])


def freezing_table(episodes: pd.DataFrame, trainable: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's freezing table per benchmark: success per backbone x condition, and the difference
    to full fine-tuning of the same backbone on the same benchmark.

    Differences carry a 95% interval and a p-value on the unit ``vs_full_unit`` names (seeds when both
    sides have 2+, else pooled episodes: ``runs.compare_success``). ``trainable``: parameter
    counts per (backbone, freeze), or per (benchmark, backbone, freeze) when it has a benchmark column.
    """
    frames = [_freezing_on_one_benchmark(group).assign(benchmark=benchmark)
              for benchmark, group in episodes.groupby("benchmark", sort=False)]
    table = pd.concat(frames, ignore_index=True) if frames else condition_success(episodes).assign(benchmark=[])
    if trainable is not None:
        keys = ["benchmark", "backbone", "freeze"] if "benchmark" in trainable.columns else ["backbone", "freeze"]
        table = table.merge(trainable, on=keys, how="left")
    first = ["benchmark", "backbone", "freeze"]
    return table[first + [c for c in table.columns if c not in first]].sort_values(first, ignore_index=True)


def _freezing_on_one_benchmark(episodes: pd.DataFrame) -> pd.DataFrame:
    table = condition_success(episodes)
    diffs = []
    for row in table.itertuples():
        full = episodes[(episodes["backbone"] == row.backbone) & (episodes["freeze"] == FULL)]
        this = episodes[(episodes["backbone"] == row.backbone) & (episodes["freeze"] == row.freeze)]
        if row.freeze == FULL or full.empty:
            diffs.append((0.0, 0.0, 0.0, 1.0, "") if row.freeze == FULL else (*(float("nan"),) * 4, ""))
            continue
        diff = compare_success(this, full)
        diffs.append((diff["change"], diff["ci_low"], diff["ci_high"], diff["p_value"], diff["unit"]))
    table[["vs_full", "vs_full_ci_low", "vs_full_ci_high", "vs_full_p", "vs_full_unit"]] = pd.DataFrame(diffs, index=table.index)
    return table


def trainable_counts(root: Path, runs: list[str]) -> pd.DataFrame:
    """Trainable / total parameters of each (backbone, freeze) from the runs' freezing.csv."""
    rows = {}
    for run in runs:
        path = root / RUN_RESULTS_DIR / run / "freezing.csv"
        if path.exists():
            table = pd.read_csv(path, index_col=0)
            rows[run] = {"trainable": int(table["trainable"].sum()), "total": int((table["trainable"] + table["frozen"]).sum())}
    return pd.DataFrame.from_dict(rows, orient="index")


def control_supervision_table(episodes: pd.DataFrame, base: str) -> pd.DataFrame:
    """The paper's 3 x 2 table for ``base``: stage 1 (none / vision frozen / vision trained) x stage 2 vision."""
    cells = {}
    plain = condition_success(episodes[episodes["backbone"] == base]).set_index("freeze")
    cells["no stage 1"] = {STAGE2_LABELS[f]: _cell(plain, f) for f in STAGE2_LABELS}
    for stage1, label in STAGE1_LABELS.items():
        stage1_runs = condition_success(episodes[episodes["backbone"] == f"{base}-fast-{stage1}"]).set_index("freeze")
        cells[label] = {STAGE2_LABELS[f]: _cell(stage1_runs, f) for f in STAGE2_LABELS}
    order = ["no stage 1", STAGE1_LABELS["freeze_vision"], STAGE1_LABELS["none"]]
    return pd.DataFrame.from_dict(cells, orient="index").loc[order, list(STAGE2_LABELS.values())]


def cell_runs(base: str, seeds: list[int]) -> dict[tuple[str, str], list[str]]:
    """The runs of each cell of the 3 x 2 table (row label, column label) -> run names, per the run
    naming of profiles/default.yaml: no stage 1 = the bb- run (vision trained) and the fz- run (frozen)."""
    runs = {("no stage 1", STAGE2_LABELS[FULL]): [f"bb-{base}-pretrained-s{s}" for s in seeds],
            ("no stage 1", STAGE2_LABELS["freeze_vision"]): [f"fz-{base}-freeze_vision-s{s}" for s in seeds]}
    for stage1, label in STAGE1_LABELS.items():
        for stage2, column in STAGE2_LABELS.items():
            runs[(label, column)] = [f"cs-{base}-{stage1}-{stage2}-s{s}" for s in seeds]
    return runs


def cell_probe_table(probes: pd.DataFrame, runs: dict[tuple[str, str], list[str]], score: str) -> pd.DataFrame:
    """``score`` (a probe column) per cell, mean over the cell's probed runs; "not run" where none is."""
    cells: dict[str, dict[str, Any]] = {}
    for (row, column), names in runs.items():
        have = [n for n in names if n in probes.index]
        cells.setdefault(row, {})[column] = (f"{probes.loc[have, score].mean():.2f} ({len(have)} run{'s' * (len(have) != 1)})"
                                             if have else "not run")
    order = ["no stage 1", STAGE1_LABELS["freeze_vision"], STAGE1_LABELS["none"]]
    return pd.DataFrame.from_dict(cells, orient="index").loc[order, list(STAGE2_LABELS.values())]


def supervision_conclusions(episodes: pd.DataFrame, base: str) -> list[str]:
    """Finding 4 for ``base``, computed: each stage-1 row of the 3 x 2 table minus "no stage 1" in the
    same stage-2 column (95% interval, p on ``compare_success``'s unit), next to the paper's change, then
    the paper's central claim tested directly: with the vision encoder frozen in stage 2, a stage 1 that
    trained the encoder beats one that kept it frozen."""
    from .paper import CONTROL_SUPERVISION_TABLE as PAPER

    def cell(stage1: str | None, stage2: str) -> pd.DataFrame:
        backbone = base if stage1 is None else f"{base}-fast-{stage1}"
        return episodes[(episodes["backbone"] == backbone) & (episodes["freeze"] == stage2)]

    def verdict(d: dict[str, Any], paper_change: float) -> str:
        sig = d["ci_low"] > 0 or d["ci_high"] < 0
        if abs(paper_change) < 1.0:  # the paper sees no change (< 1 point)
            return "interval excludes 0, unlike the paper" if sig else "no detectable change, as in the paper"
        same = (d["change"] > 0) == (paper_change > 0)
        return ("consistent with the paper (the interval excludes 0)" if sig and same
                else "reversed (the interval excludes 0, on the other side)" if sig
                else "same direction, not distinguishable" if same else "not reproduced")

    def sentence(what: str, mine: pd.DataFrame, theirs: pd.DataFrame, paper_change: float) -> str:
        d = compare_success(mine, theirs)
        return (f"{what}: {d['change']:+.2f} (95% CI [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}], p = {d['p_value']:.2g}, "
                f"{d['unit']}; paper {paper_change:+.1f} points): {verdict(d, paper_change)}")

    lines = []
    for stage2, column in STAGE2_LABELS.items():
        reference = cell(None, stage2)
        for stage1, row in STAGE1_LABELS.items():
            mine = cell(stage1, stage2)
            if mine.empty or reference.empty:
                lines.append(f"{base}, {row}, {column}: not run yet" + ("" if not reference.empty else " (nor its no-stage-1 cell)") + ".")
                continue
            paper_change = PAPER[row][column] - PAPER["no stage 1"][column]
            lines.append(sentence(f"{base}, {row} minus no stage 1, {column}", mine, reference, paper_change))
    trained, frozen = cell("none", "freeze_vision"), cell("freeze_vision", "freeze_vision")
    if not trained.empty and not frozen.empty:
        paper_change = PAPER[STAGE1_LABELS["none"]][STAGE2_LABELS["freeze_vision"]] - PAPER[STAGE1_LABELS["freeze_vision"]][STAGE2_LABELS["freeze_vision"]]
        lines.append("Paper: control supervision helps a frozen-vision policy only when stage 1 trains the vision "
                     "encoder. " + sentence(f"Here, {base}, stage 2 vision frozen, stage 1 vision trained minus stage 1 "
                                            "vision frozen", trained, frozen, paper_change) + ".")
    return lines


def text_only_loss(sequences: Sequence[Sequence[int]], groups: Sequence[Any] | None = None) -> float:
    """Cross-entropy (nats per token) of token sequences, each with an end token, under the unigram
    of its group (``groups``: one key per sequence; None: one group) at each position, fitted on the
    same sequences: what a model that ignores the image can reach from the prompt and the position alone
    (in-sample, so a lower bound for such a model's loss on these items)."""
    keys = list(groups) if groups is not None else [None] * len(sequences)
    counts: dict[tuple[Any, int], Counter] = {}
    for seq, key in zip(sequences, keys):
        for i, token in enumerate([*seq, -1]):
            counts.setdefault((key, i), Counter())[token] += 1
    total = sum(-n * math.log(n / sum(c.values())) for c in counts.values() for n in c.values())
    return total / sum(len(seq) + 1 for seq in sequences)


IMAGE_SHARE_MIN = 0.05  # below this share of what stage 1 learnt, stage 1 did not use the image to speak of


def control_corpora(store: Any, fast: Any, seed: int = 0) -> tuple[Any, Any]:
    """The stage-1 control items of ``store`` (FAST answers from ``fast``) twice: each with its own
    frame, and with the frames shuffled among the same items."""
    from vlm4vla.backbones.control_supervision import control_items
    from vlm4vla.data.corpus import Corpus

    items = control_items(store, fast)
    moved = np.random.default_rng(seed).permutation(items["image"].to_numpy())
    return Corpus(store.frames, items), Corpus(store.frames, items.assign(image=moved))


def image_share(before: float, own: float, shuffled: float) -> float:
    """The share of the loss stage 1 removed (``before`` - ``own``) that the image accounts for
    (``shuffled`` - ``own``); NaN when stage 1 removed none."""
    return (shuffled - own) / (before - own) if before > own else float("nan")


def stage1_image_dependence(stage1_dirs: Sequence[Path], store: Any, n: int = 128, seed: int = 0,
                            kept_in: Path | None = None) -> pd.DataFrame:
    """Manipulation check of stage 1 (finding 4): does each stage-1 backbone predict the FAST action
    tokens from the image? Its control loss on ``n`` demonstration frames with their own images, and
    with the images shuffled among the same items (``control_corpora``); a model that uses the image
    loses more with them shuffled. Next to the loss before stage 1 (from the stage-1 summary), the
    ``image_share`` of what stage 1 learnt, and the text-only reference (``text_only_loss`` by
    instruction and position).

    ``kept_in``: a folder (kept in git) where each row measured here is written as ``<name>.json``
    (with ``n`` and ``seed``), and from which the rows of ``stage1_dirs`` absent from this machine are
    read (measured where that backbone was; ``measured_here`` says which): a fresh machine without
    the stage-1 backbones still reports the check."""
    import json

    from vlm4vla.analysis.robot_probes import write_result
    from vlm4vla.backbones.base import load_backbone
    from vlm4vla.backbones.control_supervision import CONTROL_QTYPE, SUMMARY_FILE, item_losses
    from vlm4vla.data.fast import FastTokenizer, action_chunks

    rows = []
    for path in map(Path, stage1_dirs):
        kept = Path(kept_in) / f"{path.name}.json" if kept_in is not None else None
        if not path.is_dir():
            if kept is not None and kept.is_file():
                record = json.loads(kept.read_text())
                if (record.get("n"), record.get("seed")) == (n, seed):
                    rows.append({**record["row"], "measured_here": False})
            continue
        fast = FastTokenizer.load(path)
        backbone = load_backbone(path)
        own, shuffled = (item_losses(backbone, corpus, (CONTROL_QTYPE,), n=n, seed=seed)
                         for corpus in control_corpora(store, fast, seed))
        before = json.loads((path / SUMMARY_FILE).read_text()).get("control_loss_before", float("nan"))
        sequences = [fast.encode(c) for c in action_chunks(store, fast.cfg.chunk_size)]
        row = {"backbone": path.name, "loss_before_stage1": before, "loss_own_image": own,
               "loss_shuffled_image": shuffled, "image_gain": shuffled - own,
               "image_share": image_share(before, own, shuffled),
               "text_only_reference": text_only_loss(sequences, list(store.table["instruction"]))}
        if kept is not None:
            write_result(kept, {"n": n, "seed": seed, "row": {k: float(v) if k != "backbone" else v for k, v in row.items()}})
        rows.append({**row, "measured_here": True})
    columns = ["backbone", "loss_before_stage1", "loss_own_image", "loss_shuffled_image", "image_gain",
               "image_share", "text_only_reference", "measured_here"]
    return pd.DataFrame(rows, columns=columns).set_index("backbone")


def image_dependence_lines(dependence: pd.DataFrame, min_share: float = IMAGE_SHARE_MIN) -> list[str]:
    """One sentence per stage-1 backbone of ``stage1_image_dependence``: what stage 1 learnt, how much
    of it the image accounts for, against the text-only reference; below ``min_share`` it says the 3 x 2
    table measures a perturbation of the backbone, not the paper's mechanism."""
    lines = []
    for name, row in dependence.iterrows():
        line = (f"{name}: stage 1 took the action-token loss from {row.loss_before_stage1:.2f} to {row.loss_own_image:.2f} "
                f"nats per token; shuffling the images costs {row.image_gain:+.3f}, so the image accounts for "
                f"{row.image_share:.1%} of what stage 1 learnt; the text-only reference is {row.text_only_reference:.2f}")
        if row.loss_own_image > row.text_only_reference:
            line += " (stage 1 has not even reached what the instruction alone allows)"
        if not row.image_share >= min_share:
            line += (f". Under {min_share:.0%}: this stage 1 supervised the language side, not the vision encoder, so "
                     "the rows above measure a perturbation of the backbone, not the paper's mechanism")
        else:
            line += (f". At least {min_share:.0%}: stage 1 predicts actions partly from the image, so the rows above "
                     "test the paper's mechanism (control-relevant gradient into the vision features)")
        lines.append(line + ".")
    return lines


def _cell(table: pd.DataFrame, freeze: str) -> str:
    if freeze not in table.index:
        return "not run"
    row = table.loc[freeze]
    return f"{row.success:.2f} [{row.pooled_ci_low:.2f}, {row.pooled_ci_high:.2f}] ({row.seeds} seed{'' if row.seeds == 1 else 's'})"


def above_floor(freezing: pd.DataFrame) -> pd.DataFrame:
    """The rows of a ``freezing_table`` whose backbone's full fine-tuning succeeded at least once on that
    benchmark. Below a floor (full fine-tuning at 0) no condition can show a cost of freezing, so a floor
    backbone's changes of 0 would only dilute a mean change across backbones."""
    full = freezing[freezing["freeze"] == FULL].set_index(["benchmark", "backbone"])["success"]
    keys = pd.MultiIndex.from_frame(freezing[["benchmark", "backbone"]])
    return freezing[~(full.reindex(keys).to_numpy() == 0)]


def conclusions(freezing: pd.DataFrame, episodes: pd.DataFrame | None = None) -> list[str]:
    """Which of the paper's modality claims hold here, per benchmark, computed from the freezing table; with
    the ``episodes`` behind it, vision frozen is tested against word embeddings frozen per backbone.

    A backbone whose full fine-tuning never succeeded on a benchmark is at a floor there: freezing cannot
    show a cost, so its lines say so, and two conditions that both never succeeded are no test of the
    paper's claim (rather than "not reproduced")."""
    lines = []
    kept = above_floor(freezing)  # the one definition of a floor, for the per-row lines and the means
    for row in freezing[freezing["freeze"] != FULL].itertuples():
        where = f"{row.backbone} on {row.benchmark}, {row.freeze}"
        if pd.isna(row.vs_full):
            lines.append(f"{where}: no full fine-tuning run to compare with.")
            continue
        sig = row.vs_full_ci_high < 0 or row.vs_full_ci_low > 0
        direction = "hurts" if row.vs_full < 0 else "helps" if row.vs_full > 0 else "changes success"
        at_floor = row.Index not in kept.index
        floor = (f" Full fine-tuning of {row.backbone} never succeeded on {row.benchmark}: no cost of freezing can "
                 "show below that floor." if at_floor else "")
        verdict = ("the interval excludes 0" if sig else "neither condition ever succeeded" if at_floor and row.success == 0
                   else "not distinguishable from 0 at this number of seeds")
        lines.append(f"{where}: {direction} by {row.vs_full:+.2f} vs full fine-tuning "
                     f"(95% CI [{row.vs_full_ci_low:+.2f}, {row.vs_full_ci_high:+.2f}], p = {row.vs_full_p:.2g}, {row.vs_full_unit}; "
                     f"{verdict}).{floor}")
    for benchmark, group in freezing.groupby("benchmark", sort=False):
        change = group.dropna(subset=["vs_full"]).pivot_table(index="backbone", columns="freeze", values="vs_full")
        if not {"freeze_vision", "freeze_word_embeddings"} <= set(change.columns):
            continue
        paired = change[["freeze_vision", "freeze_word_embeddings"]].dropna()  # backbones run in both conditions
        if paired.empty:
            continue
        above = paired[paired.index.isin(kept.loc[kept["benchmark"] == benchmark, "backbone"])]
        floored = [b for b in paired.index if b not in above.index]
        vision, words = above["freeze_vision"], above["freeze_word_embeddings"]
        left_out = (f"; left out of the mean, as their full fine-tuning never succeeded: {', '.join(floored)}"
                    if floored else "")
        claim = ("Paper: freezing the vision encoder costs far more than freezing the word embeddings. Here, on "
                 + (f"{benchmark}: mean change {vision.mean():+.2f} (vision frozen) vs {words.mean():+.2f} (word embeddings "
                    f"frozen) over the {len(above)} backbone(s) run in both{left_out}" if len(above) else
                    f"{benchmark}: no mean change, as every backbone run in both is at the floor{left_out}"))
        if episodes is None:
            verdict = ("no test" if above.empty else "same direction as the paper" if vision.mean() < words.mean()
                       else "not reproduced")
            lines.append(f"{claim}: {verdict} (the two conditions not tested against each other).")
            continue
        here = episodes[episodes["benchmark"] == benchmark]
        tests = []
        for backbone in paired.index:
            mine = here[(here["backbone"] == backbone) & (here["freeze"] == "freeze_vision")]
            theirs = here[(here["backbone"] == backbone) & (here["freeze"] == "freeze_word_embeddings")]
            if mine.empty or theirs.empty:
                continue
            d = compare_success(mine, theirs)
            verdict = ("consistent with the paper" if d["ci_high"] < 0 else "reversed" if d["ci_low"] > 0
                       else "same direction, not distinguishable" if d["change"] < 0
                       else "no test: neither condition ever succeeded (a floor)"
                       if d["success"] == 0 and d["reference"] == 0 else "not reproduced")
            tests.append(f"{backbone}: vision frozen minus word embeddings frozen {d['change']:+.2f} (95% CI "
                         f"[{d['ci_low']:+.2f}, {d['ci_high']:+.2f}], p = {d['p_value']:.2g}, {d['unit']}): {verdict}")
        lines.append(f"{claim}. " + "; ".join(tests) + ".")
    return lines
