"""The pipeline: profiles, the notebook runner's checks, offline reports, the index."""

import ast
import json
import shutil
from pathlib import Path

import pytest
import yaml

from vlm4vla.pipeline import profiles
from vlm4vla.pipeline.errors import ConfigError
from vlm4vla.pipeline.report import remote_resources, strip_remote, write_index
from vlm4vla.pipeline.runner import NotebookRun, available_notebooks, run_notebook

NOTEBOOK = '''# %% tags=["parameters"]
scale = 2.0
names = ["a"]
fail = False
out_dir = "artifacts/x"
metrics_path = "artifacts/metrics/x.json"

# %%
from vlm4vla.pipeline.notebook import write_metrics
assert not fail, "asked to fail"
write_metrics(metrics_path, {"doubled": scale * 2, "n_names": len(names)})
print("done", scale)
'''


@pytest.fixture
def mini_repo(tmp_path, monkeypatch):
    """A repository with one tiny notebook and profiles, as the runner sees a real one."""
    for name in ("dvc.yaml", "pyproject.toml"):
        (tmp_path / name).write_text("")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks/00-mini.py").write_text(NOTEBOOK)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles/default.yaml").write_text(yaml.safe_dump({"mini": {"scale": 3.0}, "training": {"run": {"lr": 1}}}))
    (tmp_path / "profiles/smoke.yaml").write_text(yaml.safe_dump({"mini": {"names": ["x", "y"]}}))
    monkeypatch.setenv("VLM4VLA_ROOT", str(tmp_path))
    return tmp_path


def _run(root, section="mini"):
    return run_notebook(NotebookRun("00-mini", (section,), "00-mini"), root)


def test_profile_overrides_merge_onto_default(mini_repo):
    params = profiles.load_profile("smoke", mini_repo)
    assert params["mini"] == {"scale": 3.0, "names": ["x", "y"]}
    assert params["profile"] == "smoke" and params["runs"] == {}
    assert profiles.write_params("smoke", mini_repo) is True
    assert profiles.write_params("smoke", mini_repo) is False  # unchanged file: DVC sees no change


def test_unknown_profile_names_the_valid_ones(mini_repo):
    with pytest.raises(ConfigError, match=r"profile: unknown value 'smokey'.*did you mean 'smoke'.*allowed: default, smoke"):
        profiles.load_profile("smokey", mini_repo)


def test_run_matrix_expands_into_complete_runs():
    matrix = [{"name": "m-{bb}-s{seed}", "grid": {"bb": ["a", "b"], "seed": [0, 1]},
               "set": {"run.backbone": "zoo/{bb}", "run.seed": "{seed}"}}]
    runs = profiles.expand_run_matrix(matrix, {"run": {"lr": 0.1, "seed": 9}, "evaluation": {"k": 4}})
    assert sorted(runs) == ["m-a-s0", "m-a-s1", "m-b-s0", "m-b-s1"]
    assert runs["m-b-s1"] == {"run": {"lr": 0.1, "seed": 1, "backbone": "zoo/b"}, "evaluation": {"k": 4}}
    assert isinstance(runs["m-a-s1"]["run"]["seed"], int)  # "{seed}" keeps the grid value's type


@pytest.mark.parametrize("entry, message", [
    ({"name": "x.{a}", "grid": {"a": [1]}}, "no dots"),
    ({"name": "x", "grid": {"a": []}}, "non-empty lists"),
    ({"name": "x", "grid": {"a": [1]}, "sett": {}}, "unknown keys"),
    ({"name": "x-{b}", "grid": {"a": [1]}}, "not a grid key"),
])
def test_bad_run_matrix_entries_are_named(entry, message):
    with pytest.raises(ConfigError, match=message):
        profiles.expand_run_matrix([entry], {})


def test_an_entry_base_section_is_merged_over_the_training_defaults():
    matrix = [{"name": "lb-s{seed}", "base": "libero_training", "grid": {"seed": [0]}, "set": {"run.seed": "{seed}"}},
              {"name": "mw-s{seed}", "grid": {"seed": [0]}, "set": {"run.seed": "{seed}"}}]
    training = {"run": {"lr": 0.1, "arm_dim": 3}, "suite": {"preset": "mt10"}}
    sections = {"libero_training": {"run": {"arm_dim": 6}, "suite": {"benchmark": "libero", "preset": "libero_object"}}}
    runs = profiles.expand_run_matrix(matrix, training, sections)
    assert runs["lb-s0"] == {"run": {"lr": 0.1, "arm_dim": 6, "seed": 0}, "suite": {"preset": "libero_object", "benchmark": "libero"}}
    assert runs["mw-s0"] == {"run": {"lr": 0.1, "arm_dim": 3, "seed": 0}, "suite": {"preset": "mt10"}}
    with pytest.raises(ConfigError, match=r"run_matrix\[0\].base='libero': not a section of the profile; allowed: \['libero_training'\]"):
        profiles.expand_run_matrix([{**matrix[0], "base": "libero"}], training, sections)


def test_conflicting_duplicate_runs_are_an_error():
    matrix = [{"name": "same", "grid": {"a": [1]}, "set": {"x": 1}}, {"name": "same", "grid": {"a": [1]}, "set": {"x": 2}}]
    with pytest.raises(ConfigError, match="defined twice"):
        profiles.expand_run_matrix(matrix, {})


def test_runner_executes_renders_and_records(mini_repo):
    profiles.write_params("default", mini_repo)
    report = _run(mini_repo)
    metrics = json.loads((mini_repo / "artifacts/metrics/00-mini.json").read_text())
    assert metrics["doubled"] == 6.0 and metrics["n_names"] == 1 and metrics["profile"] == "default"
    assert metrics["wall_time_s"] > 0
    page = report.read_text()
    assert "done 3.0" in page and remote_resources(page) == []
    index = write_index(mini_repo).read_text()
    assert 'href="00-mini.html"' in index and "doubled" in index and "&quot;scale&quot;: 3.0" in index
    # a run made on another machine: its metrics came with git, its notebook and report did not
    (mini_repo / "artifacts/metrics/runs").mkdir(parents=True)
    (mini_repo / "artifacts/metrics/runs/bb-x-s0.json").write_text(json.dumps({"success_k4": 0.25, "wall_time_s": 60}))
    index = write_index(mini_repo).read_text()
    assert "runs/bb-x-s0 (results in git; its report is on the machine that ran it)" in index
    assert "success_k4: <b>0.25</b>" in index and 'href="runs/bb-x-s0.html"' not in index


def test_runner_rejects_wrong_type_naming_the_field(mini_repo):
    (mini_repo / "params.yaml").write_text(yaml.safe_dump({"mini": {"scale": "big"}}))
    with pytest.raises(ConfigError, match=r"params.yaml:mini.scale = 'big' is a str, but the notebook expects a float"):
        _run(mini_repo)


def test_runner_rejects_unknown_parameter_and_section(mini_repo):
    (mini_repo / "params.yaml").write_text(yaml.safe_dump({"mini": {"scael": 1.0}}))
    with pytest.raises(ConfigError, match=r"mini.scael.*did you mean 'scale'"):
        _run(mini_repo)
    with pytest.raises(ConfigError, match=r"params section 'mni'.*did you mean 'mini'"):
        _run(mini_repo, section="mni")


def test_missing_notebook_lists_the_available_ones(mini_repo):
    profiles.write_params("default", mini_repo)
    with pytest.raises(ConfigError, match=r"notebook: unknown value '00-mni'.*allowed: 00-mini"):
        run_notebook(NotebookRun("00-mni", ("mini",), "00-mni"), mini_repo)


def test_failing_cell_keeps_the_executed_copy_and_fails(mini_repo):
    (mini_repo / "params.yaml").write_text(yaml.safe_dump({"mini": {"fail": True}}))
    with pytest.raises(RuntimeError, match="asked to fail"):
        _run(mini_repo)
    assert (mini_repo / "artifacts/notebooks/00-mini.ipynb").exists()
    assert "asked to fail" in (mini_repo / "reports/00-mini.html").read_text()
    assert not (mini_repo / "artifacts/metrics/00-mini.json").exists()  # no metrics for a failed stage


def test_strip_remote_removes_cdn_scripts_only():
    page = ('<script src="https://cdn.x/require.js"></script><script>var a=1;</script>'
            '<link rel="stylesheet" href="//cdn.x/a.css"><a href="https://example.org">link</a>')
    cleaned = strip_remote(page)
    assert "cdn.x" not in cleaned and "var a=1" in cleaned and "example.org" in cleaned
    assert remote_resources(cleaned) == []


def test_committed_params_yaml_is_the_default_profile(repo):
    assert (repo / "params.yaml").read_text() == profiles.render_params("default", repo)


def test_every_stage_notebook_exists_and_is_a_percent_script(repo):
    names = available_notebooks(repo)
    for stage in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].values():
        cmd = stage.get("do", stage)["cmd"]
        if cmd.startswith("vlm4vla run "):
            assert cmd.split()[2] in names
    for name in names:
        text = (repo / f"notebooks/{name}.py").read_text()
        assert '# %% tags=["parameters"]' in text, f"{name} has no parameters cell"
    assert not list((repo / "notebooks").glob("*.ipynb")), "notebooks are kept as jupytext scripts"


@pytest.mark.parametrize("name", ["smoke", "default", "paper"])
def test_baselines_count_the_runs_own_evaluation_episodes(repo, name):
    params = profiles.load_profile(name, repo)
    run_eval, base_eval = params["training"]["evaluation"], params["baselines"]["evaluation"]
    for key in ("episodes_per_task", "seed"):
        assert base_eval[key] == run_eval[key], f"profiles/{name}: baselines.evaluation.{key} != training.evaluation.{key}"
    assert params["baselines"]["suite"] == params["training"]["suite"], f"profiles/{name}: baselines.suite != training.suite"


@pytest.mark.parametrize("name", ["default", "paper"])
def test_libero_baselines_count_the_libero_runs_own_episodes(repo, name):
    params = profiles.load_profile(name, repo)
    base = params["libero_baselines"]
    for run_name, run in ((n, r) for n, r in params["runs"].items() if r["suite"].get("benchmark") == "libero"):
        for key in ("episodes_per_task", "init_states", "seed"):
            assert base["evaluation"][key] == run["evaluation"][key], f"profiles/{name}: libero_baselines.evaluation.{key} != {run_name}'s"
        assert base["suite"] == {k: v for k, v in run["suite"].items() if k != "benchmark"}, f"profiles/{name}: suite != {run_name}'s"
        assert base["demos_dir"] == run["demos_dir"]


def test_notebook_defaults_are_the_default_profile(repo):
    """STYLE: a notebook's parameters cell holds the default profile, so both read the same."""
    from vlm4vla.pipeline.runner import notebook_defaults

    params = profiles.load_profile("default", repo)
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        cmd = stage.get("do", stage)["cmd"].split()
        if cmd[:2] != ["vlm4vla", "run"]:
            continue
        section = "training" if "foreach" in stage else cmd[cmd.index("--section") + 1]
        assert notebook_defaults(repo / f"notebooks/{cmd[2]}.py") == params[section], f"{cmd[2]} vs profiles/default.yaml:{section}"


@pytest.mark.parametrize("notebook", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]-*.py")))
def test_every_parameter_line_is_understood(notebook):
    """papermill skips a parameters line it cannot parse (e.g. parentheses in a trailing comment) with
    only a printed warning; the runner would then reject that parameter as unknown. Every name
    assigned in the parameters cell must come back from the runner's parser with its value."""
    from vlm4vla.pipeline.runner import notebook_defaults, notebook_parameters, read_notebook

    path = Path(__file__).resolve().parents[1] / "notebooks" / notebook
    cell = next(c for c in read_notebook(path).cells if "parameters" in c.metadata.get("tags", []))
    assigned = [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign) for t in node.targets]
    assert set(notebook_parameters(path)) == set(assigned), f"{notebook}: parameters the runner cannot read"
    literal = {n for n in assigned if n not in ("out_dir", "metrics_path")}
    assert literal <= set(notebook_defaults(path)) | {"out_dir", "metrics_path"}, notebook


def test_progress_counts_finished_runs_and_estimates_from_measured_ones(tmp_path):
    from vlm4vla.pipeline.progress import progress_report, run_progress

    runs = {"bb-a-s0": {"run": {"seed": 0}, "suite": {"preset": "mt10-vision"}},
            "bb-a-s1": {"run": {"seed": 1}, "suite": {"preset": "mt10-vision"}},
            "fz-a-s0": {"run": {"seed": 0}, "suite": {"preset": "mt10-vision"}},
            "bb-a-s2": {"run": {"seed": 2}, "suite": {"preset": "mt10-vision"}},
            "lb-a-s0": {"run": {"seed": 0}, "suite": {"benchmark": "libero"}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"runs": runs}))
    metrics = tmp_path / "artifacts/metrics/runs"
    metrics.mkdir(parents=True)
    for name, wall in (("bb-a-s0", 600.0), ("fz-a-s0", 1800.0)):
        (metrics / f"{name}.json").write_text(json.dumps({"wall_time_s": wall}))
    states = run_progress(tmp_path)
    assert [s.name for s in states if s.done] == ["bb-a-s0", "fz-a-s0"]
    lines = progress_report(states, jobs=2)
    assert lines[0] == "2 of 5 planned runs finished"
    assert any(l.split() == ["bb-*", "metaworld", "1/3", "(seed", "0:", "1/1,", "seed", "1:", "0/1,", "seed", "2:", "0/1)"]
               for l in lines), lines
    # two Meta-World runs to go at the median of 600 s and 1800 s (20 min): 40 min of stage time, 20 min with 2 jobs
    assert "metaworld: 2 runs to go, 0.7 h (a median 20 min each, measured over 2 finished runs)" in lines[-2]
    assert lines[-1].startswith("estimated remaining: 0.7 h of stage time, about 0.3 h with 2 stages at once")
    assert "1 libero runs (none finished yet" in lines[-1]
    with pytest.raises(ValueError, match="jobs must be >= 1, got 0"):
        progress_report(states, jobs=0)
    # LIBERO runs run one at a time: with one of 1800 s measured, 40 min / 2 + 30 min = 50 min, not 35
    runs["lb-a-s1"] = {"run": {"seed": 1}, "suite": {"benchmark": "libero"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"runs": runs}))
    (metrics / "lb-a-s1.json").write_text(json.dumps({"wall_time_s": 1800.0}))
    lines = progress_report(run_progress(tmp_path), jobs=2)
    assert lines[-1] == ("estimated remaining: 1.2 h of stage time, about 0.8 h with 2 stages at once "
                         "(libero runs one at a time)"), lines
    with pytest.raises(FileNotFoundError, match="vlm4vla profile"):
        run_progress(tmp_path / "nowhere")


def test_progress_says_how_far_each_running_training_is(tmp_path):
    from vlm4vla.pipeline.progress import running_lines

    runs = {name: {"run": {"steps": 3000}} for name in ("bb-a-s0", "bb-b-s0", "bb-c-s0", "bb-d-s0")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"runs": runs}))
    live = tmp_path / "artifacts/runs/bb-a-s0/live"
    live.mkdir(parents=True)
    (live / "metrics.json").write_text(json.dumps({"train": {"loss": 0.1}, "step": 1713}))
    (tmp_path / "artifacts/runs/bb-b-s0").mkdir()
    (tmp_path / "artifacts/runs/bb-b-s0/train_summary.json").write_text("{}")
    (tmp_path / "artifacts/runs/bb-d-s0/live").mkdir(parents=True)
    (tmp_path / "artifacts/runs/bb-d-s0/live/metrics.json").write_text(json.dumps({"step": 2999}))
    (tmp_path / "artifacts/runs/bb-d-s0/train_summary.json").write_text("{}")
    (tmp_path / "artifacts/runs/bb-d-s0/eval_results.json").write_text("{}")
    from vlm4vla.train.evaluation import EpisodeCounter, progress_path

    (tmp_path / "artifacts/runs/bb-e-s0").mkdir()
    (tmp_path / "artifacts/runs/bb-e-s0/train_summary.json").write_text("{}")
    counter = EpisodeCounter(progress_path(tmp_path / "artifacts/runs/bb-e-s0/evals/k4.json"), total=200)
    for _ in range(57):
        counter.on_episode_end(None, {"success": True})
    assert [p.name for p in (tmp_path / "artifacts/runs/bb-e-s0/evals").iterdir()] == ["k4.progress.json"]
    lines = running_lines(tmp_path, {11: "train@bb-b-s0", 10: "train@bb-a-s0", 12: "train@bb-c-s0", 13: "zoo",
                                     14: "train@bb-d-s0", 15: "train@bb-e-s0"})
    assert lines == ["  running: bb-a-s0: training, step 1713 of 3000 (pid 10)",
                     "  running: bb-b-s0: evaluating (training finished) (pid 11)",
                     "  running: bb-c-s0: starting (pid 12)",
                     "  running: bb-d-s0: evaluated, writing its report (pid 14)",
                     "  running: bb-e-s0: evaluating (training finished), 57 of 200 episodes (pid 15)",
                     "  running: zoo (pid 13)"]


def test_expected_stage_seconds_are_the_median_finished_run_of_the_same_benchmark(tmp_path):
    from vlm4vla.pipeline.progress import expected_stage_seconds, run_progress

    runs = {"bb-a-s0": {"run": {"seed": 0}}, "bb-a-s1": {"run": {"seed": 1}}, "bb-b-s0": {"run": {"seed": 0}},
            "bb-b-s1": {"run": {"seed": 1}}, "lb-a-s0": {"suite": {"benchmark": "libero"}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"runs": runs}))
    metrics = tmp_path / "artifacts/metrics/runs"
    metrics.mkdir(parents=True)
    for name, wall in (("bb-a-s0", 600.0), ("bb-a-s1", 1000.0), ("bb-b-s0", 2000.0)):
        (metrics / f"{name}.json").write_text(json.dumps({"wall_time_s": wall}))
    # only unfinished runs; LIBERO has no finished run, so no estimate for it
    assert expected_stage_seconds(run_progress(tmp_path)) == {"train@bb-b-s1": 1000.0}


def test_a_run_with_more_evaluation_passes_is_expected_to_take_longer(tmp_path):
    """Finding 1's seed-0 runs evaluate at three k and an earlier checkpoint: four closed-loop passes."""
    from vlm4vla.pipeline.progress import expected_stage_seconds, progress_report, run_progress

    one = {"run": {"seed": 1, "steps": 3000, "batch_size": 32}, "evaluation": {"execute_k": [4]}}
    four = {"run": {"seed": 0, "steps": 3000, "batch_size": 32},
            "evaluation": {"execute_k": [4, 2, 1], "checkpoints": [1500]}}
    runs = {"bb-a-s1": one, "bb-b-s1": one, "bb-c-s1": one, "bb-a-s0": four, "bb-b-s0": four}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"runs": runs}))
    metrics = tmp_path / "artifacts/metrics/runs"
    metrics.mkdir(parents=True)
    # trained 3000 x 32 samples at 80/s (1200 s), then one pass: 600 s and 800 s
    for name, wall in (("bb-a-s1", 1800.0), ("bb-b-s1", 2000.0)):
        (metrics / f"{name}.json").write_text(json.dumps({"wall_time_s": wall, "train_steps": 3000,
                                                          "train_samples_per_s": 80.0}))
    states = run_progress(tmp_path)
    assert {s.name: s.passes for s in states} == {"bb-a-s1": 1, "bb-b-s1": 1, "bb-c-s1": 1, "bb-a-s0": 4, "bb-b-s0": 4}
    # one pass like the finished ones; four passes: 1200 s of training + 4 x the median pass (700 s); 9900 s in all
    assert expected_stage_seconds(states) == {"train@bb-c-s1": 1900.0, "train@bb-a-s0": 4000.0,
                                              "train@bb-b-s0": 4000.0}
    assert "metaworld: 3 runs to go, 2.8 h" in progress_report(states)[-2]
    # once a four-pass run has finished, the others are expected to take as long as it did
    (metrics / "bb-a-s0.json").write_text(json.dumps({"wall_time_s": 5000.0}))
    assert expected_stage_seconds(run_progress(tmp_path))["train@bb-b-s0"] == 5000.0
    # finished runs that do not say how fast they trained: the median run per pass, times the passes
    for name in ("bb-a-s1", "bb-b-s1", "bb-a-s0"):
        (metrics / f"{name}.json").write_text(json.dumps({"wall_time_s": 1800.0}))
    (metrics / "bb-a-s0.json").unlink()
    assert expected_stage_seconds(run_progress(tmp_path))["train@bb-a-s0"] == 7200.0


def test_until_takes_a_clock_time_or_a_span():
    import datetime

    from vlm4vla.cli import parse_until

    now = datetime.datetime(2026, 11, 25, 3, 10, 30).timestamp()
    assert parse_until("2h50m", now) == now + 2 * 3600 + 50 * 60
    assert parse_until("170m", now) == parse_until("2h50m", now)
    assert parse_until("3h", now) == now + 3 * 3600
    assert parse_until("06:05", now) == datetime.datetime(2026, 11, 25, 6, 5).timestamp()
    assert parse_until("03:00", now) == datetime.datetime(2026, 11, 26, 3, 0).timestamp()  # past: tomorrow
    for bad in ("", "25:00", "soon", "2x", "6.5h"):
        with pytest.raises(SystemExit, match="--until .*allowed a clock time HH:MM"):
            parse_until(bad, now)
