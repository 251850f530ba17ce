"""Finding analyses on synthetic runs whose answer is known."""

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml

from vlm4vla.analysis import backbones as bb
from vlm4vla.analysis.runs import fit_at, load_early_checkpoints, load_histories, load_runs, training_fit


def _episodes(rates: dict[tuple[str, str], float], seeds=(0, 1, 2), tasks=("a", "b"), n=20, ks=(4, 1)) -> pd.DataFrame:
    rows = []
    for (backbone, init), rate in rates.items():
        for seed in seeds:
            for k in ks:
                for t, task in enumerate(tasks):
                    s = int(round(n * min(1.0, rate + 0.02 * seed + 0.03 * t - (0.05 if k == 1 else 0))))
                    rows.append(dict(run=f"{backbone}-{init}-{seed}", backbone=backbone, init=init, freeze="full",
                                     seed=seed, benchmark="metaworld", k=k, task=task, successes=s, n=n, success_rate=s / n))
    return pd.DataFrame(rows)


def test_init_gap_detects_a_clear_advantage_and_no_advantage():
    eps = bb.fixed_k(_episodes({("m1", "pretrained"): 0.8, ("m1", "scratch"): 0.1,
                                ("m2", "pretrained"): 0.4, ("m2", "scratch"): 0.4}))
    gaps = bb.init_gap(eps).set_index("backbone")
    assert gaps.loc["m1", "gap"] == pytest.approx(0.7, abs=0.03) and gaps.loc["m1", "ci_low"] > 0.5
    assert gaps.loc["m1", "p_value"] < 1e-4 and gaps.loc["m1", "unit"] == "seeds (3 vs 3, Welch t)"
    assert gaps.loc["m2", "ci_low"] <= 0 <= gaps.loc["m2", "ci_high"]
    lines = bb.conclusions(bb.main_table(eps), bb.init_gap(eps), pd.DataFrame(columns=["probe", "method", "coefficient"]))
    assert any("m1" in l and ": holds" in l for l in lines) and any("m2" in l and "does not hold" in l for l in lines)


def test_an_init_gap_between_two_runs_that_never_succeeded_is_a_floor_not_a_failed_claim():
    eps = bb.fixed_k(_episodes({("m1", "pretrained"): 0.8, ("m1", "scratch"): 0.1,
                                ("z", "pretrained"): 0.0, ("z", "scratch"): 0.0}))
    eps.loc[eps["backbone"] == "z", ["successes", "success_rate"]] = 0  # _episodes adds 0.02 per seed
    gaps = bb.init_gap(eps).set_index("backbone")
    assert gaps.loc["z", ["pretrained", "scratch", "gap"]].tolist() == [0, 0, 0]
    assert gaps.loc["m1", "pretrained"] > gaps.loc["m1", "scratch"] > 0
    lines = bb.conclusions(bb.main_table(eps), gaps.reset_index(), pd.DataFrame(columns=["probe", "method", "coefficient"]))
    z_line = next(l for l in lines if "for z on" in l)
    assert "cannot be tested (neither ever succeeded on metaworld: a floor)" in z_line and "does not hold" not in z_line
    assert any("for m1 on" in l and ": holds" in l for l in lines)


def test_compare_success_uses_seeds_when_both_sides_have_two_and_shared_episodes_otherwise():
    from vlm4vla.analysis.runs import compare_success

    eps = _episodes({("m", "pretrained"): 0.6, ("m", "scratch"): 0.3}, ks=(4,))
    pre, scr = eps[eps["init"] == "pretrained"], eps[eps["init"] == "scratch"]
    seeds = compare_success(pre, scr)
    assert seeds["unit"] == "seeds (3 vs 3, Welch t)" and seeds["change"] == pytest.approx(0.3, abs=0.01)
    one = compare_success(pre[pre["seed"] == 1], scr)  # one seed: only the other side's seed 1 is compared
    assert one["unit"] == "episodes, seed 1" and one["reference"] == pytest.approx(scr[scr["seed"] == 1]["success_rate"].mean())
    assert 0 < one["ci_low"] < one["change"] < one["ci_high"] and one["p_value"] < 0.05  # 40 episodes a side
    apart = compare_success(pre[pre["seed"] == 0], scr[scr["seed"] == 2])
    assert apart["unit"] == "episodes, seeds 0 vs 2"


def test_compare_success_takes_seeds_that_agree_exactly_without_a_warning():
    from vlm4vla.analysis.runs import compare_success

    eps = _episodes({("m", "pretrained"): 0.6, ("m", "scratch"): 0.3}, seeds=(0, 1), tasks=("a",), n=50, ks=(4,))
    flat = eps[eps["init"] == "scratch"].assign(successes=10, success_rate=0.2)  # both seeds 0.2: no spread
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compare_success(eps[eps["init"] == "pretrained"], flat)
    assert result["unit"] == "seeds (2 vs 2, Welch t)" and result["change"] == pytest.approx(0.41)


def test_capability_correlation_recovers_a_monotone_relation():
    names = [f"m{i}" for i in range(6)]
    success = pd.Series(np.linspace(0.1, 0.9, 6), index=names)
    probes = pd.DataFrame({"general_vqa_accuracy": np.linspace(0.2, 0.7, 6) ** 2,
                           "noise": [0.3, 0.1, 0.5, 0.2, 0.6, 0.4]}, index=names)
    corr = bb.capability_correlations(success, probes)
    spearman = corr[corr["method"] == "spearman"].set_index("probe")
    assert spearman.loc["general_vqa_accuracy", "coefficient"] == pytest.approx(1.0)
    assert spearman.loc["general_vqa_accuracy", "p_value"] < 0.01
    assert spearman.loc["noise", "p_value"] > 0.05
    assert bb.best_predictor(corr)["probe"] == "general_vqa_accuracy"
    # an error metric that falls as success rises predicts through a negative coefficient
    probes["pointing_error"] = np.linspace(30, 5, 6) ** 1.5
    probes["general_vqa_accuracy"] = [0.2, 0.3, 0.25, 0.5, 0.4, 0.6]
    best = bb.best_predictor(bb.capability_correlations(success, probes))
    assert best["probe"] == "pointing_error" and best["coefficient"] == pytest.approx(-1.0)


def test_selection_effect_is_never_negative_and_main_table_orders_by_success():
    eps = _episodes({("m1", "pretrained"): 0.5, ("m2", "pretrained"): 0.7})
    sel = bb.selection_effect(eps)
    assert (sel["optimism"] >= 0).all() and (sel["best_k"] == 4).all() and (sel["runs"] == 3).all()
    table = bb.main_table(bb.fixed_k(eps))
    assert list(table["backbone"]) == ["m2", "m1"]
    assert (table["pooled_ci_low"] <= table["success"]).all() and (table["success"] <= table["pooled_ci_high"]).all()


def test_selection_counts_only_swept_runs_and_picks_the_best_checkpoint():
    swept = _episodes({("m1", "pretrained"): 0.5}, seeds=(0,), ks=(4, 1))
    plain = _episodes({("m1", "pretrained"): 0.1}, seeds=(1, 2), ks=(4,))  # no sweep: left out of the table
    early = _episodes({("m1", "pretrained"): 0.8}, seeds=(0,), ks=(4,)).assign(step=1500)
    sel = bb.selection_effect(pd.concat([swept, plain], ignore_index=True), early).set_index("backbone")
    assert sel.loc["m1", "runs"] == 1
    assert sel.loc["m1", "fixed_k"] == pytest.approx(0.525, abs=0.001)  # seed 0 only, k=4, final
    assert sel.loc["m1", "best_choice"] == "k=4, step 1500"
    assert sel.loc["m1", "optimism"] == pytest.approx(0.3, abs=0.02)
    without = bb.selection_effect(pd.concat([swept, plain], ignore_index=True)).set_index("backbone")
    assert without.loc["m1", "best_choice"] == "k=4, step final" and without.loc["m1", "optimism"] == 0


def test_load_early_checkpoints_reads_each_step_at_its_k(tmp_path):
    assert load_early_checkpoints(tmp_path, "bb-").empty
    (tmp_path / "artifacts/metrics/runs").mkdir(parents=True)
    (tmp_path / "artifacts/run-results/bb-x-s0").mkdir(parents=True)
    (tmp_path / "artifacts/metrics/runs/bb-x-s0.json").write_text(json.dumps({"backbone": "artifacts/zoo/x", "seed": 0}))
    result = {"per_task": {"t": {"successes": 1, "n": 4, "success_rate": 0.25}}, "eval": {"execute_k": 2}}
    (tmp_path / "artifacts/run-results/bb-x-s0/eval_checkpoints.json").write_text(json.dumps({"1500": result}))
    early = load_early_checkpoints(tmp_path, "bb-")
    assert early.iloc[0][["backbone", "k", "step", "successes"]].tolist() == ["x", 2, 1500, 1]


def test_load_runs_reads_cached_runs_and_names_missing_ones(tmp_path):
    (tmp_path / "artifacts/metrics/runs").mkdir(parents=True)
    (tmp_path / "artifacts/run-results/bb-x-s0").mkdir(parents=True)
    (tmp_path / "artifacts/metrics/runs/bb-x-s0.json").write_text(json.dumps({"backbone": "artifacts/zoo/x", "seed": 0, "init": "scratch"}))
    result = {"per_task": {"t": {"successes": 3, "n": 4, "success_rate": 0.75}}, "suite": {"benchmark": "metaworld"}}
    (tmp_path / "artifacts/run-results/bb-x-s0/eval_results.json").write_text(json.dumps({"4": result}))
    runs = load_runs(tmp_path, "bb-")
    assert runs.iloc[0][["backbone", "init", "k", "successes"]].tolist() == ["x", "scratch", 4, 3]
    (tmp_path / "artifacts/metrics/runs/bb-y-s0.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"dvc repro train@bb-y-s0"):
        load_runs(tmp_path, "bb-")


def test_freezing_table_finds_the_vision_bottleneck_and_control_table_has_every_cell():
    from vlm4vla.analysis import vision as vis

    eps = pd.concat([
        _episodes({("m", "pretrained"): 0.8}, ks=(4,)).assign(freeze="full"),
        _episodes({("m", "pretrained"): 0.2}, ks=(4,)).assign(freeze="freeze_vision"),
        _episodes({("m", "pretrained"): 0.8}, ks=(4,)).assign(freeze="freeze_word_embeddings"),
        _episodes({("m-fast-none", "pretrained"): 0.85}, ks=(4,)).assign(freeze="full"),
    ], ignore_index=True)
    table = vis.freezing_table(eps[eps["backbone"] == "m"]).set_index("freeze")
    assert table.loc["freeze_vision", "vs_full"] == pytest.approx(-0.6, abs=0.01)
    assert table.loc["freeze_vision", "vs_full_ci_high"] < 0
    assert table.loc["freeze_word_embeddings", "vs_full_ci_low"] <= 0 <= table.loc["freeze_word_embeddings", "vs_full_ci_high"]
    lines = vis.conclusions(vis.freezing_table(eps[eps["backbone"] == "m"]))
    assert any("on metaworld: mean change -0.60" in line and "same direction as the paper" in line and "not tested" in line
               for line in lines)
    tested = vis.conclusions(vis.freezing_table(eps[eps["backbone"] == "m"]), eps[eps["backbone"] == "m"])
    assert any("m: vision frozen minus word embeddings frozen -0.60" in line and "seeds (3 vs 3, Welch t)" in line
               and line.endswith("consistent with the paper.") for line in tested)
    # a second benchmark gets its own rows, compared with its own full fine-tuning (here: no effect)
    libero = eps[eps["backbone"] == "m"].assign(benchmark="libero", success_rate=0.5, successes=10)
    both = vis.freezing_table(pd.concat([eps[eps["backbone"] == "m"], libero], ignore_index=True))
    assert both.groupby("benchmark").size().to_dict() == {"libero": 3, "metaworld": 3}
    assert both.set_index(["benchmark", "freeze"]).loc[("libero", "freeze_vision"), "vs_full"] == 0
    assert any("on libero" in line and "not reproduced" in line for line in vis.conclusions(both))
    assert any(line.startswith("m on libero, freeze_vision: changes success by +0.00") for line in vis.conclusions(both))
    assert any(line.startswith("m on metaworld, freeze_vision: hurts by -0.60") for line in vis.conclusions(both))
    both_eps = pd.concat([eps[eps["backbone"] == "m"], libero], ignore_index=True)
    assert any("on libero" in line and line.endswith("not reproduced.") for line in vis.conclusions(both, both_eps))
    grid = vis.control_supervision_table(eps, "m")
    assert grid.shape == (3, 2) and grid.loc["no stage 1", "stage 2 vision frozen"].startswith("0.2")
    assert grid.loc["stage 1, vision frozen", "stage 2 vision trained"] == "not run"


def test_a_backbone_whose_full_fine_tuning_never_succeeded_is_called_a_floor_not_a_failed_replication():
    from vlm4vla.analysis import vision as vis

    cells = {("m", "full"): 0.8, ("m", "freeze_vision"): 0.2, ("m", "freeze_word_embeddings"): 0.8,
             ("z", "full"): 0.0, ("z", "freeze_vision"): 0.0, ("z", "freeze_word_embeddings"): 0.0}
    eps = pd.concat([_episodes({(b, "pretrained"): r}, ks=(4,)).assign(freeze=f) for (b, f), r in cells.items()],
                    ignore_index=True)
    eps.loc[eps["backbone"] == "z", ["successes", "success_rate"]] = 0  # _episodes adds 0.02 per seed: z stays at 0
    lines = vis.conclusions(vis.freezing_table(eps), eps)
    floor = "never succeeded on metaworld: no cost of freezing can show below that floor."
    z_lines = [line for line in lines if line.startswith("z on metaworld")]
    m_lines = [line for line in lines if line.startswith("m on metaworld")]
    assert len(z_lines) == 2 and all(line.endswith(floor) for line in z_lines)
    assert len(m_lines) == 2 and not any(floor in line for line in m_lines)
    claim = next(line for line in lines if line.startswith("Paper: freezing the vision encoder"))
    assert "z: vision frozen minus word embeddings frozen +0.00" in claim
    assert "mean change -0.60 (vision frozen) vs +0.00 (word embeddings frozen) over the 1 backbone(s)" in claim
    assert "left out of the mean, as their full fine-tuning never succeeded: z" in claim
    only_z = vis.conclusions(vis.freezing_table(eps[eps["backbone"] == "z"]))[-1]
    assert "no mean change, as every backbone run in both is at the floor" in only_z and ": no test (" in only_z
    assert "no test: neither condition ever succeeded (a floor)" in claim and "not reproduced" not in claim
    assert "m: vision frozen minus word embeddings frozen -0.60" in claim and "consistent with the paper" in claim
    assert all("neither condition ever succeeded)." in line for line in z_lines)
    assert not any("neither condition ever succeeded" in line for line in m_lines)
    table = vis.freezing_table(eps)
    assert set(vis.above_floor(table)["backbone"]) == {"m"} and len(vis.above_floor(table)) == 3


def test_supervision_conclusions_test_each_stage1_row_against_no_stage1_and_the_paper_claim():
    from vlm4vla.analysis import vision as vis

    cells = {("m", "full"): 0.5, ("m", "freeze_vision"): 0.2, ("m-fast-none", "full"): 0.5,
             ("m-fast-none", "freeze_vision"): 0.6, ("m-fast-freeze_vision", "freeze_vision"): 0.2}
    eps = pd.concat([_episodes({(b, "pretrained"): r}, ks=(4,)).assign(freeze=f) for (b, f), r in cells.items()],
                    ignore_index=True)
    lines = vis.supervision_conclusions(eps, "m")
    by_start = {line.split(":")[0]: line for line in lines}
    # stage 1 with vision trained lifts the frozen-vision policy by 0.4; the paper saw +18.1 points
    lifted = by_start["m, stage 1, vision trained minus no stage 1, stage 2 vision frozen"]
    assert "+0.40" in lifted and "paper +18.1 points" in lifted and lifted.endswith("consistent with the paper (the interval excludes 0)")
    # stage 1 with vision frozen changes nothing, as the paper saw (+0.4 points)
    assert by_start["m, stage 1, vision frozen minus no stage 1, stage 2 vision frozen"].endswith(
        "no detectable change, as in the paper")
    # with stage 2 vision trained: the paper's +3.1 points are not seen here (0 change)
    assert by_start["m, stage 1, vision trained minus no stage 1, stage 2 vision trained"].endswith("not reproduced")
    assert "m, stage 1, vision frozen, stage 2 vision trained: not run yet." in lines
    assert lines[-1].startswith("Paper: control supervision helps a frozen-vision policy only when stage 1 trains")
    assert "minus stage 1 vision frozen: +0.40" in lines[-1] and lines[-1].endswith("consistent with the paper (the interval excludes 0).")
    # no stage 1 cells missing: said, not compared
    assert vis.supervision_conclusions(eps[eps["backbone"] != "m"], "m")[0].endswith("(nor its no-stage-1 cell).")


def test_auxiliary_changes_and_skill_correlation():
    from vlm4vla.analysis import auxiliary as aux

    eps = pd.concat([_episodes({("b", "pretrained"): 0.6}, ks=(4,)),
                     _episodes({("b-aux-pointing", "pretrained"): 0.3}, ks=(4,)),
                     _episodes({("b-aux-dense", "pretrained"): 0.6}, ks=(4,)),
                     _episodes({("b-aux-planning", "pretrained"): 0.5}, ks=(4,))], ignore_index=True)
    changes = aux.versus_base(eps).set_index("aux_task")
    assert changes.loc["pointing", "change"] == pytest.approx(-0.3, abs=0.01) and changes.loc["pointing", "ci_high"] < 0
    assert changes.loc["dense", "ci_low"] <= 0 <= changes.loc["dense", "ci_high"]
    skills = pd.DataFrame({"base": "b", "task": ["pointing", "dense", "planning"], "skill_metric": ["error_px", "acc", "acc"],
                           "skill_before": [20.0, 0.1, 0.2], "skill_after": [5.0, 0.4, 0.3]})
    joined, corr = aux.skill_vs_control(changes.reset_index(), skills)
    assert joined.set_index("aux_task").loc["pointing", "skill_gain"] == 15.0  # error fell: a gain
    assert corr is not None and corr.n == 3
    lines = aux.conclusions(changes.reset_index(), corr)
    assert "pointing" in lines[0].split("significantly worse:")[1] and "best: dense" in lines[0]
    # with item scores, the gain is the score's: a mean pixel error that rose through one far-off point
    # (20 -> 60 px) does not turn a better share of points within tolerance (0.2 -> 0.3) into a loss
    scored = skills.assign(skill_after=[60.0, 0.4, 0.3], score_before=[0.2, 0.1, 0.2], score_after=[0.3, 0.4, 0.3])
    joined, _ = aux.skill_vs_control(changes.reset_index(), scored)
    assert joined.set_index("aux_task").loc["pointing", "skill_gain"] == pytest.approx(0.1)
    assert set(joined["gain_of"]) == {"score"}


def test_one_seed_auxiliary_runs_are_compared_with_the_same_seed_base_over_episodes():
    from vlm4vla.analysis import auxiliary as aux

    eps = pd.concat([_episodes({("b", "pretrained"): 0.6}, ks=(4,), n=100),  # base: seeds 0, 1, 2
                     _episodes({("b-aux-pointing", "pretrained"): 0.3}, seeds=(0,), ks=(4,), n=100),
                     _episodes({("b-aux-dense", "pretrained"): 0.6}, seeds=(0,), ks=(4,), n=100)], ignore_index=True)
    changes = aux.versus_base(eps).set_index("aux_task")
    assert (changes["unit"] == "episodes, seed 0").all() and (changes["seeds"] == 1).all()
    assert changes.loc["pointing", "base_success"] == pytest.approx(0.615, abs=0.001)  # seed 0 of the base only
    assert changes.loc["pointing", "ci_high"] < 0 and changes.loc["pointing", "p_value"] < 1e-4
    assert changes.loc["dense", "change"] == pytest.approx(0.0) and changes.loc["dense", "p_value"] == pytest.approx(1.0)
    lines = aux.conclusions(changes.reset_index(), None)
    assert any("cannot be tested" in line and "seed SD of 0.02" in line for line in lines)


def test_baselines_sit_next_to_per_task_success_and_unknown_tasks_are_named(tmp_path):
    from vlm4vla.analysis.baselines import above_blind, load_baselines, per_task_with_baselines

    with pytest.raises(FileNotFoundError, match="dvc repro baselines"):
        load_baselines(tmp_path)
    res = lambda rates: {"per_task": {t: {"success_rate": r} for t, r in rates.items()},  # noqa: E731
                         "mean_success": sum(rates.values()) / len(rates)}
    (tmp_path / "artifacts/baselines").mkdir(parents=True)
    (tmp_path / "artifacts/baselines/baselines.json").write_text(json.dumps(
        {"null": res({"a": 0.0, "b": 0.0}), "blind replay": res({"a": 0.6, "b": 0.1}), "expert": res({"a": 1.0, "b": 1.0})}))
    base = load_baselines(tmp_path)
    assert base.loc["mean", "blind replay"] == pytest.approx(0.35)
    eps = _episodes({("m1", "pretrained"): 0.5}, ks=(4,))
    table = per_task_with_baselines(eps, "backbone", base)
    assert list(table.columns) == ["m1", "null", "blind replay", "expert"]
    assert table.loc["a", "m1"] == pytest.approx(eps[eps.task == "a"].success_rate.mean())
    assert above_blind(table, "m1") == ["b"]  # 0.5-0.6 on a is below the blind 0.6; b is above 0.1
    with pytest.raises(ValueError, match=r"tasks \['c'\]"):
        per_task_with_baselines(eps.assign(task="c"), "backbone", base)


def test_every_cell_of_the_control_table_names_its_runs_and_probe_scores_land_in_it():
    from vlm4vla.analysis import vision as vis

    runs = vis.cell_runs("m", [0, 1])
    assert runs[("no stage 1", "stage 2 vision trained")] == ["bb-m-pretrained-s0", "bb-m-pretrained-s1"]
    assert runs[("no stage 1", "stage 2 vision frozen")] == ["fz-m-freeze_vision-s0", "fz-m-freeze_vision-s1"]
    assert runs[("stage 1, vision frozen", "stage 2 vision trained")] == ["cs-m-freeze_vision-full-s0", "cs-m-freeze_vision-full-s1"]
    assert len(runs) == 6
    probes = pd.DataFrame({"probe_linear_ee_r2": [0.5, 0.7, 0.2]},
                          index=["bb-m-pretrained-s0", "bb-m-pretrained-s1", "cs-m-none-freeze_vision-s0"])
    table = vis.cell_probe_table(probes, runs, "probe_linear_ee_r2")
    assert table.shape == (3, 2)
    assert table.loc["no stage 1", "stage 2 vision trained"] == "0.60 (2 runs)"
    assert table.loc["stage 1, vision trained", "stage 2 vision frozen"] == "0.20 (1 run)"
    assert table.loc["stage 1, vision frozen", "stage 2 vision frozen"] == "not run"


def test_results_are_reported_per_benchmark_and_rankings_compared_across_them():
    rows = []
    for benchmark, scores in (("metaworld", {"a": 0.2, "b": 0.4, "c": 0.6, "d": 0.8}),
                              ("libero", {"a": 0.1, "b": 0.3, "c": 0.5, "d": 0.7})):
        for backbone, p in scores.items():
            rows += [{"run": f"{benchmark}-{backbone}", "backbone": backbone, "init": "pretrained", "freeze": "full", "seed": 0,
                      "benchmark": benchmark, "k": k, "task": f"t{benchmark}", "successes": round(p * 20), "n": 20,
                      "success_rate": round(p * 20) / 20} for k in ((4, 1) if benchmark == "metaworld" else (2,))]
    eps = pd.DataFrame(rows)
    fixed = bb.fixed_k(eps)
    assert set(zip(fixed["benchmark"], fixed["k"])) == {("metaworld", 4), ("libero", 2)}  # the largest k of each
    table = bb.main_table(fixed)
    probes = pd.DataFrame({"general_vqa_accuracy": {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}})
    corr = bb.correlations_by_benchmark(table, probes)
    assert set(corr["benchmark"]) == {"metaworld", "libero"}
    assert corr.query("method == 'spearman'")["coefficient"].tolist() == [1.0, 1.0]
    transfer = bb.cross_benchmark(table)
    assert transfer.query("method == 'spearman'")["coefficient"].iloc[0] == pytest.approx(1.0)
    lines = bb.conclusions(table, bb.init_gap(fixed), corr)
    assert any("on libero" in line for line in lines) and any("on metaworld" in line for line in lines)


def test_conclusions_say_which_correlation_the_number_of_backbones_can_detect():
    assert bb.detectable(7) == "With n = 7 backbones only |Spearman| >= 0.79 can reach p < 0.05."
    assert "no Spearman coefficient can reach" in bb.detectable(4, "fine-tunes")


def test_ties_use_seed_intervals_with_two_seeds_and_episode_intervals_with_one():
    many = bb.main_table(bb.fixed_k(_episodes({("m1", "pretrained"): 0.60, ("m2", "pretrained"): 0.58,
                                               ("m3", "pretrained"): 0.10})))
    assert bb.tied_with_best(many) == ["m2 (seeds)"]  # the best itself is not listed
    one = bb.main_table(bb.fixed_k(_episodes({("m1", "pretrained"): 0.60, ("m2", "pretrained"): 0.55,
                                              ("m3", "pretrained"): 0.10}, seeds=(0,))))
    assert bb.tied_with_best(one) == ["m2 (episodes)"]  # 40 episodes each: 0.55 is within reach


def test_a_benchmark_with_one_backbone_gets_no_best_and_no_ties():
    table = bb.main_table(bb.fixed_k(_episodes({("m1", "pretrained"): 0.60, ("m2", "pretrained"): 0.20})))
    lines = bb.conclusions(table[table["backbone"] == "m1"], pd.DataFrame(), pd.DataFrame())
    (line,) = [line for line in lines if "m1" in line]
    assert line.startswith("On metaworld only m1 has finished runs so far") and line.endswith("no ranking yet.")
    assert any("the best backbone is m1" in line for line in bb.conclusions(table, pd.DataFrame(), pd.DataFrame()))


def test_one_backbone_above_a_tie_of_zeros_is_named_and_its_degenerate_interval_is_not_evidence():
    names = [f"m{i}" for i in range(7)]
    success = pd.Series([0.0] * 6 + [0.27], index=names)  # only m6 ever succeeded
    corr = bb.capability_correlations(success, pd.DataFrame({"vqa": np.linspace(0.3, 0.6, 7)}, index=names))
    spearman = corr[corr["method"] == "spearman"].iloc[0]
    assert spearman["p_value"] >= 2 / 7 - 0.02  # the floor the conclusion states, from the statistics themselves
    assert not spearman["ci_low"] <= spearman["coefficient"] <= spearman["ci_high"]  # tied resamples were dropped
    sure = bb.how_sure(spearman["ci_low"], spearman["ci_high"], spearman["p_value"], coefficient=spearman["coefficient"])
    assert sure.startswith("not established: the bootstrap interval does not contain the estimate")
    assert bb.how_sure(0.2, 0.9, 0.01, coefficient=0.5).startswith("established")
    table = pd.DataFrame({"backbone": names, "init": "pretrained", "benchmark": "libero", "success": success.values})
    line = bb.few_succeed("libero", table.sort_values("success", ascending=False))
    assert line.startswith("On libero, 6 of 7 backbones never succeeded") and "only m6 did" in line
    assert "2/7 = 0.29" in line
    assert bb.few_succeed("libero", table.assign(success=[0.0] * 5 + [0.1, 0.27])) is None  # two differ: a ranking


def test_every_correlation_on_a_benchmark_where_one_backbone_rises_above_a_tie_is_called_degenerate():
    names = [f"m{i}" for i in range(7)]
    probes = pd.DataFrame({"general_vqa_accuracy": np.linspace(0.3, 0.6, 7),
                           "probe_depth": [0.5, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7]}, index=names)

    def lines_for(rates):
        one = dict(seeds=(0,), tasks=("a",), ks=(4,))
        table = bb.main_table(bb.fixed_k(_episodes({(m, "pretrained"): r for m, r in zip(names, rates)}, **one)))
        corr = bb.correlations_by_benchmark(table, probes)
        return bb.one_above_ties(table), [line for line in bb.conclusions(table, pd.DataFrame(), corr)
                                          if line.startswith(("General VQA", "Strongest predictor"))]

    benchmarks, tied = lines_for([0.0] * 6 + [0.3])
    assert benchmarks == {"metaworld"} and len(tied) == 2 and all("all backbones but one tie at 0" in line for line in tied)
    benchmarks, ranked = lines_for([0.0] * 5 + [0.15, 0.3])  # two backbones succeed: a ranking, the usual verdicts
    assert benchmarks == set() and len(ranked) == 2 and not any("tie at 0" in line for line in ranked)
    # the verdict this replaces for an interval that merely ends at the estimate
    assert bb.how_sure(0.62, 0.94, 0.29, coefficient=0.62).startswith("not established: the bootstrap interval excludes 0")
    assert bb.how_sure(0.62, 0.94, 0.01, coefficient=0.62, one_above_ties=True).startswith(
        "not established: all backbones but one tie at 0")


def test_a_constant_probe_is_named_and_gets_no_correlation(recwarn):
    names = ["a", "b", "c", "d"]
    probes = pd.DataFrame({"gripper_acc": [0.5] * 4, "vqa": [0.1, 0.2, 0.3, 0.4]}, index=names)
    corr = bb.capability_correlations(pd.Series([0.2, 0.1, 0.4, 0.3], index=names), probes)
    assert set(corr["probe"]) == {"vqa"} and bb.constant_probes(probes, names) == ["gripper_acc"]
    assert not [w for w in recwarn if "constant" in str(w.message).lower()]  # resamples of 4 repeat backbones


def test_coverage_lists_planned_runs_and_which_finished(tmp_path):
    from vlm4vla.analysis.runs import coverage, coverage_note
    (tmp_path / "params.yaml").write_text(
        "runs:\n  bb-a-s0: {run: {seed: 0}}\n  bb-a-s1: {run: {seed: 1}}\n  fz-a-s0: {run: {seed: 0}}\n  lb-a-s0: {run: {seed: 0}}\n")
    (tmp_path / "artifacts/metrics/runs").mkdir(parents=True)
    (tmp_path / "artifacts/metrics/runs/bb-a-s0.json").write_text("{}")
    table = coverage(tmp_path, ["bb-", "lb-"])
    assert table.set_index("run")["done"].to_dict() == {"bb-a-s0": True, "bb-a-s1": False, "lb-a-s0": False}
    note = coverage_note(table)
    assert "`bb-*` 1 of 2 planned runs finished (seed 0: 1/1, seed 1: 0/1)" in note
    assert "partial" in note and "`lb-a-s0`" in note and "fz-a-s0" not in note
    (tmp_path / "artifacts/metrics/runs/bb-a-s1.json").write_text("{}")
    (tmp_path / "artifacts/metrics/runs/lb-a-s0.json").write_text("{}")
    assert "partial" not in coverage_note(coverage(tmp_path, ["bb-", "lb-"]))


def test_coverage_says_which_backbones_were_rebuilt_between_runs(tmp_path):
    from vlm4vla.analysis.runs import coverage, coverage_note

    runs = {f"bb-{b}-s{s}": {"run": {"seed": s, "backbone": f"artifacts/zoo/{b}"}, "demos_dir": "artifacts/demonstrations"}
            for b in "ab" for s in (0, 1)}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"runs": runs}))
    (tmp_path / "artifacts/metrics/runs").mkdir(parents=True)
    for name in runs:
        (tmp_path / f"artifacts/metrics/runs/{name}.json").write_text("{}")
    builds = {"bb-a-s0": "111.dir", "bb-a-s1": "222.dir", "bb-b-s0": "333.dir", "bb-b-s1": "333.dir"}
    lock = {"stages": {f"train@{name}": {"deps": [{"path": "artifacts/demonstrations", "md5": "d.dir"},
                                                  {"path": runs[name]["run"]["backbone"], "md5": md5}]}
                       for name, md5 in builds.items()}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    table = coverage(tmp_path, ["bb-"])
    assert table.set_index("run")["build"].to_dict() == builds
    note = coverage_note(table)
    assert "Backbones rebuilt between sittings: `a` (2 builds over 2 runs)." in note and "`b`" not in note
    assert "Demonstrations" not in note
    lock["stages"]["train@bb-a-s1"]["deps"][1]["md5"] = "111.dir"
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert "rebuilt" not in coverage_note(coverage(tmp_path, ["bb-"]))
    lock["stages"]["train@bb-b-s1"]["deps"][0]["md5"] = "e.dir"
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    note = coverage_note(coverage(tmp_path, ["bb-"]))
    assert "Demonstrations rebuilt between sittings: `demonstrations` (2 builds over 4 runs)" in note
    assert "train bit-identically" in note and "no check" not in note  # Meta-World's variants were checked
    assert "Backbones" not in note
    for stage in lock["stages"].values():  # the same runs on a recording whose variants nobody compared
        stage["deps"][0]["path"] = "artifacts/libero-demonstrations"
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    runs = {name: {**run, "demos_dir": "artifacts/libero-demonstrations"} for name, run in runs.items()}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"runs": runs}))
    note = coverage_note(coverage(tmp_path, ["bb-"]))
    assert "`libero-demonstrations` (2 builds over 4 runs)" in note
    assert "no check that the `libero-demonstrations` variants train the same" in note and "bit-identically" not in note


def test_a_correlation_is_established_only_when_interval_and_permutation_test_agree():
    assert bb.how_sure(0.11, 1.0, 0.01).startswith("established")
    assert bb.how_sure(0.11, 1.0, 0.085) == "not established: the bootstrap interval excludes 0 but the permutation p is 0.085"
    assert bb.how_sure(-0.2, 1.0, 0.01) == "not established: the interval includes 0"
    assert bb.how_sure(-1.0, -0.3, 0.02).startswith("established")


def test_load_finished_skips_missing_prefixes_and_returns_an_empty_table_when_not_required(tmp_path):
    from vlm4vla.analysis.runs import EPISODE_COLUMNS, load_finished

    (tmp_path / "artifacts/metrics/runs").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no finished runs named cs-"):
        load_finished(tmp_path, ["cs-"])
    empty = load_finished(tmp_path, ["cs-"], required=False)
    assert empty.empty and list(empty.columns) == EPISODE_COLUMNS
    assert list(bb.fixed_k(empty).columns) == EPISODE_COLUMNS  # the notebooks' next step copes with it
    joined = pd.concat([_episodes({("m", "pretrained"): 0.5}), empty], ignore_index=True)
    assert joined["success_rate"].dtype == float and joined["seed"].dtype == "int64"  # not object: plots still work


def test_auxiliary_example_figure_shows_distinct_questions_with_their_answers():
    import matplotlib

    matplotlib.use("Agg")
    from vlm4vla.analysis import plots

    frames = np.zeros((5, 8, 8, 3), dtype=np.uint8)
    examples = pd.DataFrame({"row": [0, 1, 2, 3], "kind": "pointing", "prompt": ["p", "p", "q", "r"],
                             "answer": ["1 2", "1 2", "3 4", "5 6"], "before": "x", "after": ["1 2", "1 2", "3 3", "5 6"]})
    fig = plots.auxiliary_examples(frames, examples, title="t", n=4)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["pointing: 1 2\nbefore: x\nafter: 1 2", "pointing: 3 4\nbefore: x\nafter: 3 3",
                      "pointing: 5 6\nbefore: x\nafter: 5 6"]  # the repeated (p, 1 2) question is shown once
    marks = [[(line.get_marker(), *line.get_xydata()[0]) for line in ax.get_lines()] for ax in fig.axes]
    assert marks[1] == [("o", 3, 4), ("x", 3, 3)]  # the true answer and the answer after, where they point;
    assert fig.legends and plots.answer_points("12 7 30 9 5").tolist() == [[12, 7], [30, 9]]  # "x" before: none


def test_seed_points_pool_each_seeds_tasks_with_a_wilson_interval_at_its_category():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vlm4vla.analysis import plots
    from vlm4vla.stats import wilson_interval

    episodes = pd.DataFrame({"aux_task": ["none", "none", "none", "none", "dense", "dense", "other"],
                             "seed": [0, 0, 1, 1, 0, 0, 0], "task": ["a", "b", "a", "b", "a", "b", "a"],
                             "successes": [2, 4, 10, 10, 0, 0, 5], "n": 10})
    ax = plots.seed_points(episodes, "aux_task", ["none", "dense"], plt.subplots()[1])
    centres = sorted((round(float(line.get_xdata()[0]), 3), float(line.get_ydata()[0])) for line in ax.lines
                     if len(line.get_xdata()) == 1 and line.get_marker() == "o")
    assert centres == [(-0.125, 0.3), (0.125, 1.0), (0.875, 0.0)]  # seed 0 left, seed 1 right; "other" not drawn
    bars = {round(float(seg[0][1]), 6): round(float(seg[1][1]), 6) for c in ax.collections for seg in c.get_segments()
            if seg[0][0] == seg[1][0]}
    low, high = wilson_interval(6, 20)
    assert bars[round(low, 6)] == round(high, 6)  # seed 0 of 'none': 6 of 20 pooled episodes
    plt.close("all")


def test_against_blind_says_when_no_backbone_beats_replaying_a_demonstration():
    from vlm4vla.analysis.baselines import against_blind

    table = pd.DataFrame({"backbone": ["a", "b", "a"], "init": "pretrained", "benchmark": ["mw", "mw", "lb"],
                          "success": [0.4, 0.1, 0.0]})
    refs = {"mw": pd.DataFrame({"blind replay": [0.3]}, index=["mean"]),
            "lb": pd.DataFrame({"blind replay": [0.81]}, index=["mean"])}
    lines = against_blind(table, refs)
    assert lines[0].startswith("On lb no backbone reaches the blind replay's 0.81 (best 0.00")
    assert lines[1] == ("On mw, 1 of 2 backbones beat the blind replay's 0.30 (a demonstration's actions without "
                        "images): a.")
    assert against_blind(table, {"mw": pd.DataFrame(columns=[])}) == []  # no recorded references: nothing said


def test_image_dependence_lines_say_when_stage1_did_not_use_the_image():
    from vlm4vla.analysis import vision as vis

    assert vis.image_share(before=8.0, own=4.0, shuffled=5.0) == 0.25  # the image: 1 of the 4 nats removed
    assert math.isnan(vis.image_share(before=4.0, own=4.0, shuffled=4.0))  # nothing learnt: no share
    dependence = pd.DataFrame({"loss_before_stage1": [8.0, 8.0], "loss_own_image": [4.0, 3.0],
                               "loss_shuffled_image": [4.01, 4.0], "image_gain": [0.01, 1.0],
                               "image_share": [0.0025, 0.2], "text_only_reference": [3.4, 3.4]},
                              index=pd.Index(["blind", "looks"], name="backbone"))
    blind, looks = vis.image_dependence_lines(dependence)
    assert "accounts for 0.2% of what stage 1 learnt" in blind and "not even reached what the instruction alone" in blind
    assert blind.endswith("not the paper's mechanism.")
    assert "accounts for 20.0%" in looks and "the text-only reference is 3.40. At least 5%" in looks
    assert looks.endswith("test the paper's mechanism (control-relevant gradient into the vision features).")


def test_training_fit_averages_the_last_logged_steps_of_each_run(tmp_path):
    run = tmp_path / "artifacts/run-results/bb-x-s0"
    run.mkdir(parents=True)
    steps = np.arange(1, 11)
    history = pd.DataFrame({"step": steps, "loss": 0.0, "loss_arm": steps / 10, "loss_gripper": 1.0,
                            "acc_gripper": (steps > 8).astype(float)})
    history.iloc[::-1].to_csv(run / "history.csv", index=False)  # rows out of step order
    fit = training_fit(load_histories(tmp_path, ["bb-x-s0", "bb-missing-s0"]), last=2)
    assert list(fit.index) == ["bb-x-s0"]  # no history: left out
    # the last two steps (9, 10) by step, not by file order
    assert fit.loc["bb-x-s0"].to_dict() == pytest.approx({"loss_arm": 0.95, "loss_gripper": 1.0, "acc_gripper": 1.0})
    # up to an earlier step: steps 7 and 8
    assert fit_at(history, step=8, last=2).to_dict() == pytest.approx({"loss_arm": 0.75, "loss_gripper": 1.0, "acc_gripper": 0.0})


def test_fit_correlations_recover_a_monotone_fit_success_relation_per_benchmark():
    rows, fit = [], {}
    for i in range(5):
        for benchmark, sign in (("metaworld", 1), ("libero", -1)):
            run = f"bb-b{i}-{benchmark}"
            rows += [{"run": run, "backbone": f"b{i}", "init": "pretrained", "seed": 0, "benchmark": benchmark,
                      "k": 4, "task": t, "successes": 0, "n": 10, "success_rate": 0.1 * i + 0.01 * j}
                     for j, t in enumerate(["t1", "t2"])]
            fit[run] = {"loss_arm": 1.0 - 0.1 * i, "loss_gripper": 0.5, "acc_gripper": 0.5 + sign * 0.05 * i}
    per_run = bb.fit_and_success(pd.DataFrame(rows), pd.DataFrame.from_dict(fit, orient="index"))
    assert per_run.set_index("run").loc["bb-b2-libero", "success"] == pytest.approx(0.205)  # mean over tasks
    correlations = bb.fit_correlations(per_run)
    table = correlations.set_index(["benchmark", "fit", "method"])
    assert table.loc[("metaworld", "acc_gripper", "spearman"), "coefficient"] == pytest.approx(1.0)
    assert table.loc[("libero", "acc_gripper", "spearman"), "coefficient"] == pytest.approx(-1.0)
    assert table.loc[("metaworld", "loss_arm", "spearman"), "coefficient"] == pytest.approx(-1.0)
    assert ("metaworld", "loss_gripper", "spearman") not in table.index  # the same for every run: no coefficient
    flat = per_run.assign(success=0.5)  # the same success everywhere: nothing to correlate, and no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bb.fit_correlations(flat).empty
    lines = bb.fit_lines(correlations)
    assert len(lines) == 2 and all("n = 5 runs" in line for line in lines)
    assert any(line.startswith("Training fit vs closed-loop success on libero") and "Spearman -1.00" in line for line in lines)


def test_a_benchmark_where_every_backbone_has_the_same_success_gets_no_ranking_and_no_correlation():
    rows = []
    for benchmark, rates in (("metaworld", {"a": 0.1, "b": 0.2, "c": 0.3}), ("libero", {"a": 0.0, "b": 0.0, "c": 0.0})):
        for backbone, p in rates.items():
            rows.append({"run": f"{benchmark}-{backbone}", "backbone": backbone, "init": "pretrained", "freeze": "full",
                         "seed": 0, "benchmark": benchmark, "k": 4, "task": "t", "successes": round(p * 20), "n": 20,
                         "success_rate": p})
    table = bb.main_table(bb.fixed_k(pd.DataFrame(rows)))
    assert bb.cross_benchmark(table).empty  # a constant side has no rank correlation (not a p-value of 0.0002)
    lines = bb.conclusions(table, bb.init_gap(bb.fixed_k(pd.DataFrame(rows))), pd.DataFrame(columns=["probe", "method"]))
    libero = [line for line in lines if line.startswith("On libero")]
    assert libero == ["On libero all 3 backbones with finished runs have the same success (0.00): no ranking, "
                      "and no correlation with it is defined."]
    assert any(line.startswith("On metaworld the best backbone is c") for line in lines)


def test_convergence_measures_how_much_the_arm_loss_still_fell_over_the_last_window(tmp_path):
    steps = np.arange(1, 1001)
    histories = {"lb-still-s0": np.where(steps > 500, 0.5, 1.0),  # halved over the last 500 steps
                 "lb-flat-s0": np.full(len(steps), 0.2),  # converged
                 "bb-short-s0": None}  # 300 steps only: fewer than two windows
    for run, loss in histories.items():
        folder = tmp_path / "artifacts/run-results" / run
        folder.mkdir(parents=True)
        n = len(steps) if loss is not None else 300
        pd.DataFrame({"step": steps[:n], "loss": 0.0, "loss_arm": loss[:n] if loss is not None else 1.0,
                      "loss_gripper": 0.5, "acc_gripper": np.where(steps[:n] > 500, 0.9, 0.6)}
                     ).iloc[::-1].to_csv(folder / "history.csv", index=False)  # rows out of step order
    loaded = load_histories(tmp_path, [*histories, "lb-missing-s0"])
    assert list(dict.fromkeys(loaded["run"])) == list(histories)  # in the order asked, a missing history left out
    runs = pd.DataFrame({"run": list(histories), "backbone": ["a", "b", "c"], "init": "pretrained",
                         "benchmark": ["libero", "libero", "metaworld"]})
    table = bb.convergence(loaded, runs, window=500).set_index("run")
    assert list(table.index) == ["lb-still-s0", "lb-flat-s0"]  # sorted by benchmark, backbone; the short run left out
    assert table.loc["lb-still-s0", "arm_loss_drop"] == pytest.approx(0.5)
    assert table.loc["lb-flat-s0", "arm_loss_drop"] == pytest.approx(0.0)
    assert table.loc["lb-still-s0", ["acc_gripper_before", "acc_gripper_last"]].tolist() == pytest.approx([0.6, 0.9])
    assert table.loc["lb-still-s0", "steps"] == 1000
    (line,) = bb.convergence_lines(table.reset_index(), window=500, threshold=0.05)
    assert line.startswith("On libero, 1 of 2 runs were still learning when training stopped at 1000 steps")
    assert "median fall 25%, range 0% to 50%" in line
    assert "mid-way" not in line  # half the runs, not most
    (most,) = bb.convergence_lines(table.reset_index().assign(arm_loss_drop=[0.5, 0.1]))
    assert "2 of 2 runs" in most and "stops most runs mid-way" in most
