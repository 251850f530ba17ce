"""The robot-probes stage without its notebook: results cached per backbone, reused only while nothing
they depend on changed, and merged into finding 1's probe table."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from vlm4vla.analysis import robot_probes as rp
from vlm4vla.analysis.zoo import ROBOT_PROBE_SCORES, load_probes, load_robot_probes
from vlm4vla.backbones.zoo import ZOO_SUMMARY, write_zoo_summary, zoo_table
from vlm4vla.backbones.base import BackboneConfig, make_backbone
from vlm4vla.data.demos import DemoConfig, DemoStore, generate_demonstrations
from vlm4vla.envs import make_suite_config

torch.set_num_threads(1)
CFG = rp.make_probe_config({"n_per_kind": 8}, {"max_frames": 60, "n_boot": 20})


def _probes(score: float) -> dict[str, float | None]:
    """A flat robot-probe dict as robot_probe_summary writes it (scores, intervals, references)."""
    out: dict[str, float | None] = {}
    for col in ROBOT_PROBE_SCORES:
        out |= {col: score, f"{col}_ci_low": score - 0.1, f"{col}_ci_high": score + 0.1, f"{col}_n": 200}
    out["probe_gripper_acc_chance"] = 0.5
    out["probe_linear_ee_r2_random_init"] = score / 2
    out["probe_linear_object_r2_ci_low"] = None  # a failed bootstrap is stored as null
    return out


def _checkpoint(folder: Path, weights: bytes = b"w0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    (folder / "model.safetensors").write_bytes(weights)
    return folder


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Two roots of fake checkpoints, a fake store, and a probe that records whom it probed."""
    zoo, aux = tmp_path / "artifacts/zoo", tmp_path / "artifacts/auxiliary-vlms"
    for name in ("a", "a-scratch", "b"):
        _checkpoint(zoo / name)
    (zoo / "corpus").mkdir()  # not a checkpoint: no config.json
    _checkpoint(aux / "a-aux-pointing")
    store_dir = tmp_path / "artifacts/demonstrations"
    store_dir.mkdir(parents=True)
    (store_dir / "meta.json").write_text('{"seed": 0}')
    probed: list[str] = []

    def probe_member(member, store, cfg, key):
        probed.append(f"{member.group}/{member.name}")
        return {"name": member.name, "group": member.group, "backbone": str(member.path), "key": key,
                "seconds": 1.5, "probes": _probes(0.5)}

    monkeypatch.setattr(rp, "probe_member", probe_member)
    roots = [zoo, tmp_path / "artifacts/control-supervision", aux]
    return SimpleNamespace(root=tmp_path, zoo=zoo, roots=roots, store=SimpleNamespace(path=store_dir),
                           out=tmp_path / "artifacts/robot-probes", probed=probed)


def _run(fake: SimpleNamespace, cfg=CFG) -> pd.DataFrame:
    fake.probed.clear()
    return rp.probe_backbones(rp.find_members(fake.roots), fake.store, cfg, fake.out, progress=False)


def test_members_are_checkpoint_folders_and_a_missing_root_is_noted(fake, capsys) -> None:
    members = rp.find_members(fake.roots)
    assert [(m.group, m.name) for m in members] == [("zoo", "a"), ("zoo", "a-scratch"), ("zoo", "b"),
                                                     ("auxiliary-vlms", "a-aux-pointing")]
    assert "control-supervision does not exist, skipped" in capsys.readouterr().out


def test_a_second_run_reuses_every_result(fake) -> None:
    first = _run(fake)
    assert first["computed"].all() and len(fake.probed) == 4
    assert (fake.out / "zoo/a.json").is_file() and (fake.out / "auxiliary-vlms/a-aux-pointing.json").is_file()
    second = _run(fake)
    assert fake.probed == [] and not second["computed"].any()
    assert second["seconds"].tolist() == [1.5] * 4  # read back from the cached results


def test_changed_weights_store_or_config_recompute_what_they_change(fake) -> None:
    _run(fake)
    _checkpoint(fake.zoo / "b", weights=b"w1")
    _run(fake)
    assert fake.probed == ["zoo/b"]
    (fake.zoo / "a" / "README.md").write_text("a card rewritten later")  # not a model file
    _run(fake)
    assert fake.probed == []
    (fake.store.path / "meta.json").write_text('{"seed": 1}')
    _run(fake)
    assert len(fake.probed) == 4
    _run(fake, rp.make_probe_config({"n_per_kind": 9}, {"max_frames": 60, "n_boot": 20}))
    assert len(fake.probed) == 4


def test_a_killed_run_resumes_and_damaged_or_stale_results_are_replaced(fake) -> None:
    _run(fake)
    (fake.out / "zoo/a.json").unlink()  # killed before writing a
    (fake.out / "zoo/b.json").write_text('{"name": "b", "ke')  # half a file (never from write_result)
    (fake.out / "zoo/gone.json").write_text("{}")  # a backbone that is no longer in the zoo
    (fake.out / "zoo/a-scratch.json.tmp").write_text("")  # the temporary file of a killed write
    _run(fake)
    assert sorted(fake.probed) == ["zoo/a", "zoo/b"]
    assert sorted(p.name for p in (fake.out / "zoo").iterdir()) == ["a-scratch.json", "a.json", "b.json"]


def test_write_result_is_atomic_and_strict(tmp_path: Path) -> None:
    path = tmp_path / "g/m.json"
    rp.write_result(path, {"probes": {"x": rp._plain(np.float64("nan")), "n": rp._plain(np.int64(3))}})
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}")) == \
        {"probes": {"x": None, "n": 3}}
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]
    with pytest.raises(ValueError):  # a NaN that slipped through is an error, not an invalid file
        rp.write_result(tmp_path / "g/bad.json", {"x": float("nan")})
    assert not (tmp_path / "g/bad.json").exists()


def _zoo_member(root: Path, name: str, steps: int, vqa: float, **extra: float) -> None:
    folder = root / "artifacts/zoo" / name
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"name": name, "steps": steps, "vqa_accuracy": vqa, **extra}))
    write_zoo_summary(zoo_table(root / "artifacts/zoo"), root / ZOO_SUMMARY)  # what the zoo stage keeps in git


def test_load_probes_merges_robot_probe_scores_into_the_zoo_table(tmp_path: Path) -> None:
    _zoo_member(tmp_path, "a", 100, 0.6, probe_gripper_acc=0.1)  # an old summary column: replaced
    _zoo_member(tmp_path, "a-scratch", 0, 0.0)
    _zoo_member(tmp_path, "b", 50, 0.4)  # not probed yet
    out = tmp_path / "artifacts/robot-probes/zoo"
    for name, score in (("a", 0.7), ("a-scratch", 0.2)):
        rp.write_result(out / f"{name}.json", {"name": name, "probes": _probes(score)})
    table = load_probes(tmp_path)
    assert list(table.columns) == ["general_vqa_accuracy", *ROBOT_PROBE_SCORES]  # scores only, one panel each
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "probe_gripper_acc"] == 0.7 and table.loc["a", "general_vqa_accuracy"] == 0.6
    assert table.loc["b"].drop("general_vqa_accuracy").isna().all()
    assert load_probes(tmp_path, include_scratch=True).loc["a-scratch", "probe_linear_ee_r2"] == 0.2
    full = load_robot_probes(tmp_path, "zoo")
    assert full.loc["a", "probe_linear_ee_r2_random_init"] == 0.35 and np.isnan(full.loc["a", "probe_linear_object_r2_ci_low"])
    assert load_robot_probes(tmp_path, "control-supervision").empty


def test_load_probes_without_any_robot_probes_keeps_general_vqa(tmp_path: Path) -> None:
    _zoo_member(tmp_path, "a", 100, 0.6)
    assert list(load_probes(tmp_path).columns) == ["general_vqa_accuracy"]


def test_score_table_shows_intervals_where_the_probe_gives_them() -> None:
    probes = pd.DataFrame([_probes(0.5)], index=pd.MultiIndex.from_tuples([("zoo", "a")], names=["group", "name"]))
    probes = probes.drop(columns="probe_gripper_acc_ci_low").astype(float)  # as load_robot_probes reads it
    table = rp.score_table(probes)
    assert table.loc[("zoo", "a"), "depth_order_acc"] == "0.50 [0.40, 0.60]"
    assert table.loc[("zoo", "a"), "gripper_acc"] == "0.50"
    assert table.loc[("zoo", "a"), "linear_object_r2"] == "0.50"  # null interval
    refs = rp.reference_table(probes).set_index("probe")
    assert refs.loc["linear_ee_r2", "gain_over_random_init"] == pytest.approx(0.25)
    assert refs.loc["gripper_acc", "chance"] == 0.5


def test_make_probe_config_rejects_unknown_fields() -> None:
    with pytest.raises(TypeError, match="n_per_knd"):
        rp.make_probe_config({"n_per_knd": 8}, {})
    with pytest.raises(ValueError, match="max_frames"):
        rp.make_probe_config({}, {"max_frames": 1})


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    """2 expert episodes of each smoke task (the linear probe holds one out per task)."""
    suite = make_suite_config("smoke", max_episode_steps=120)
    path = generate_demonstrations(suite, DemoConfig(episodes_per_task=2, seed=0, workers=0),
                                   tmp_path_factory.mktemp("robot_probe_demos") / "store")
    return DemoStore.open(path)


def test_a_real_tiny_backbone_is_probed_and_read_back(tiny_store: DemoStore, tmp_path: Path) -> None:
    tiny = {"hidden_size": 64, "text_layers": 2, "vision_layers": 2, "heads": 2, "vocab_size": 512}
    make_backbone(BackboneConfig(family="qwen2_vl", **tiny)).save(tmp_path / "artifacts/zoo/qwen-tiny")
    members = rp.find_members([tmp_path / "artifacts/zoo"])
    status = rp.probe_backbones(members, tiny_store, CFG, tmp_path / "artifacts/robot-probes", progress=False)
    assert status["computed"].tolist() == [True]
    probes = load_robot_probes(tmp_path, "zoo")
    assert set(ROBOT_PROBE_SCORES) <= set(probes.columns)
    assert probes.loc["qwen-tiny", "probe_linear_ee_r2_random_init"] <= 1
    again = rp.probe_backbones(members, tiny_store, CFG, tmp_path / "artifacts/robot-probes", progress=False)
    assert not again["computed"].any()


def test_results_of_kept_members_survive_when_their_checkpoint_is_elsewhere(fake) -> None:
    """A policy probed on the machine that trained it: its result (in git) is kept, not pruned, here."""
    _run(fake)
    members = rp.find_members(fake.roots)
    here, elsewhere = members[1:], members[:1]  # zoo/a's checkpoint is not on this machine
    fake.probed.clear()
    rp.probe_backbones(here, fake.store, CFG, fake.out, progress=False, keep=elsewhere)
    assert fake.probed == [] and (fake.out / "zoo/a.json").is_file()
    rp.probe_backbones(here, fake.store, CFG, fake.out, progress=False)  # not kept: pruned as before
    assert not (fake.out / "zoo/a.json").exists()
