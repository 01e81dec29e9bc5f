"""The committed run configs, their training order, and the training-throughput benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fer_study import runs as runs_mod
from fer_study.errors import ModelError
from fer_study.throughput import measure, recipes_from_configs
from fer_study.train import RunConfig

REPO = Path(__file__).resolve().parents[1]


def test_committed_configs_are_valid_and_named_for_what_they_are():
    configs = runs_mod.run_configs(REPO / "configs")
    assert configs, "no committed run configs"
    for name, cfg in configs.items():
        RunConfig.from_json(cfg)  # every field known
        assert cfg["run_dir"] == f"runs/{name}"
        assert name.startswith(cfg["model"])  # never "vgg16" for a from-scratch vgg_style
        assert not Path(cfg["data"]).is_absolute()
        if cfg["model"] == "vgg_style":
            assert f"_w{cfg['model_kwargs']['width']}_" in name
    teachers = runs_mod.teacher_specs(REPO / "configs")
    for cfg in configs.values():
        if cfg.get("teacher"):
            spec = teachers[cfg["teacher"]]  # each student's teacher has a committed spec
            assert all(Path(m).name in configs for m in spec.members)


def _write(d: Path, name: str, **kw) -> dict:
    cfg = RunConfig(run_dir=f"{d}/runs/{name}", **kw).to_json()
    (d / "configs" / "runs").mkdir(parents=True, exist_ok=True)
    (d / "configs" / "runs" / f"{name}.json").write_text(json.dumps(cfg))
    return cfg


def test_students_train_after_plain_runs_and_names_must_match(tmp_path):
    _write(tmp_path, "b_student", teacher="t.npz", teacher_weight=0.5)
    _write(tmp_path, "z_plain")
    _write(tmp_path, "a_plain")
    configs = runs_mod.run_configs(tmp_path / "configs")
    assert runs_mod.training_order(configs) == ["a_plain", "z_plain", "b_student"]
    assert runs_mod.training_order(configs, ["z_plain", "a_plain"]) == ["z_plain", "a_plain"]
    with pytest.raises(ValueError, match="no committed config"):
        runs_mod.training_order(configs, ["nope"])
    bad = RunConfig(run_dir="runs/other").to_json()
    (tmp_path / "configs" / "runs" / "mismatch.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="must end in"):
        runs_mod.run_configs(tmp_path / "configs")


def test_missing_teacher_without_a_spec_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="configs/teachers"):
        runs_mod.ensure_teacher(str(tmp_path / "absent.npz"), {})


def test_recipes_deduplicate_seeds():
    a = RunConfig(model="vgg_style", model_kwargs={"width": 8}, seed=0).to_json()
    b = {**a, "seed": 1, "run_dir": "x"}
    c = {**a, "model_kwargs": {"width": 16}}
    assert list(recipes_from_configs({"a": a, "b": b, "c": c})) == ["a", "c"]


def test_throughput_measures_a_real_training_step():
    cfg = RunConfig(model="vgg_style", model_kwargs={"width": 4, "blocks": 2},
                    batch_size=16, input_size=44).to_json()
    r = measure(cfg, "tensorflow", "float32", steps=2, warmup=1)
    assert "error" not in r, r
    assert r["img_per_s"] > 0 and r["steps_timed"] == 2 and r["params"] > 0
    assert measure(cfg, "no_such_backend", "float32")["error"].endswith("not installed")


def test_leaderboard_spec_names_committed_runs_only():
    from fer_study.leaderboard import read_spec

    spec = read_spec(REPO / "configs" / "leaderboard.json")
    configs = runs_mod.run_configs(REPO / "configs")
    assert {Path(r).name for r in spec["runs"]} <= set(configs)
    assert not Path(spec["data"]).is_absolute()
