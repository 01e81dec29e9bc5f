"""Shipping trained runs as the default model: float32, calibrated, measured, refused on
synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fer_study.cli import main
from fer_study.models import as_float32, build_model
from fer_study.precision import dtype_policy
from fer_study.ship import deployable_from_leaderboard, ship
from fer_study.train import RunConfig, train

TINY = {"model": "vgg_style", "epochs": 1, "batch_size": 8, "verbose": 0, "patience": 0,
        "model_kwargs": {"width": 4, "blocks": 2}, "tta": "none", "precision": "float32"}


def test_bf16_model_ships_as_float32_with_the_same_predictions():
    with dtype_policy("mixed_bfloat16"):
        m = build_model("vgg_style", width=4, blocks=2)
    f = as_float32(m)
    assert {layer.dtype_policy.name for layer in f._flatten_layers()} == {"float32"}
    x = np.random.default_rng(0).integers(0, 256, (4, 48, 48, 1)).astype("float32")
    np.testing.assert_allclose(f.predict(x, verbose=0), m.predict(x, verbose=0), atol=0.02)
    plain = build_model("vgg_style", width=4, blocks=2)
    assert as_float32(plain) is plain


def test_ship_writes_calibrated_measured_assets(fer_csv, tmp_path):
    path = fer_csv[0]
    run = tmp_path / "runs" / "tiny_s0"
    train(RunConfig(**TINY, data=str(path), run_dir=str(run)))
    assets = tmp_path / "assets"
    meta = ship([str(run)], str(path), assets=assets)
    for f in ("default_model.keras", "default_model.tflite", "default_model.json"):
        assert (assets / f).is_file(), f
    assert json.loads((assets / "default_model.json").read_text()) == meta
    cal = meta["calibration"]
    assert cal["fitted_on"] == "PublicTest" and cal["temperature"] > 0
    # the TFLite file the pipeline runs scores what the Keras model scores, no TTA
    assert meta["tflite"]["privatetest_accuracy_no_tta"] == pytest.approx(
        meta["metrics"]["PrivateTest"]["none"]["accuracy"])
    assert meta["members"][0]["config_file"] == "configs/runs/tiny_s0.json"
    assert meta["command"].startswith("python -m fer_study ship runs/tiny_s0 --data ")


def test_ship_refuses_synthetic_data_and_unfinished_runs(tmp_path, capsys):
    run = tmp_path / "s"
    train(RunConfig(**TINY, data="synthetic", synthetic_sizes={"Training": 56, "PublicTest": 14,
                                                              "PrivateTest": 14},
                    run_dir=str(run)))
    assert main(["ship", str(run), "--data", "synthetic"]) == 2
    assert "real FER2013" in capsys.readouterr().err
    state = json.loads((run / "state.json").read_text())
    (run / "state.json").write_text(json.dumps({**state, "completed": False}))
    assert main(["ship", str(run), "--data", "synthetic"]) == 2
    assert "has not finished" in capsys.readouterr().err


def test_deployable_pick_is_read_from_the_leaderboard(tmp_path):
    board = tmp_path / "best.json"
    board.write_text(json.dumps({"deployable": {"name": "e", "tta": "flip", "runs": ["a", "b"]},
                                 "runs": {"a": {"run_dir": "runs/a"}}}))
    assert deployable_from_leaderboard(board) == (["runs/a", "runs/b"], True)
    board.write_text(json.dumps({"deployable": None}))
    with pytest.raises(ValueError, match="no deployable"):
        deployable_from_leaderboard(board)
