"""The best-model table: selection on PublicTest only, ensembles, seed summaries, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fer_study.cli import main
from fer_study.data import load_synthetic
from fer_study.errors import ConfigError, ModelError
from fer_study.evaluate import predict_probs
from fer_study.leaderboard import SELECT, build_leaderboard, recipe_key
from fer_study.train import RunConfig, reproduce_command, train

SIZES = {"Training": 280, "PublicTest": 140, "PrivateTest": 140}
FAST = {"model": "mini_xception", "data": "synthetic", "synthetic_sizes": SIZES, "epochs": 1,
        "batch_size": 32, "lr": 3e-3, "model_kwargs": {"l2": 1e-4}, "verbose": 0,
        "patience": 0, "tta": "none", "input_size": 44}


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for seed in (0, 1):
        cfg = RunConfig(**FAST, seed=seed, run_dir=str(root / f"s{seed}"))
        train(cfg)
        dirs.append(root / f"s{seed}")
    return dirs, load_synthetic(SIZES)


def test_selects_on_publictest_and_scores_ensembles(two_seeds):
    dirs, ds = two_seeds
    res = build_leaderboard(dirs, ds, ensembles={"pair": ["s0", "s1"]},
                            ttas=("none", "flip"), progress=False)
    rows = res["summary_table"]
    assert len(rows) == 2 * 2 + 2  # runs x TTA, plus the ensemble x TTA
    selected = [r for r in rows if r["model"].endswith("(selected)")]
    assert len(selected) == 1
    assert selected[0][f"{SELECT} acc"] == max(r[f"{SELECT} acc"] for r in rows)
    assert res["selected_publictest_accuracy"] == selected[0][f"{SELECT} acc"]
    dep = res["deployable"]
    assert dep["tta"] in ("none", "flip")
    assert dep["ship_command"].startswith("python -m fer_study ship ")
    assert not (dep["name"] == "pair" and dep["tta"] == "flip")  # 4 passes: over budget

    # The ensemble averages its members' probabilities.
    import keras

    x, y = ds.split("PrivateTest")
    p = np.mean([predict_probs(keras.saving.load_model(d / "best.keras"), x, tta="flip")
                 for d in dirs], axis=0)
    ens = next(r for r in rows if r["model"].startswith("pair") and r["TTA"] == "flip")
    assert ens["runs"] == 2
    assert ens["PrivateTest acc"] == pytest.approx(float((p.argmax(1) == y).mean()))

    # Two seeds of one recipe: a mean / sd row per TTA mode.
    assert [r["TTA"] for r in res["seed_table"]] == ["none", "flip"]
    assert res["seed_table"][0]["recipe"] == "mini_xception"  # s0, s1 share no name: the model
    accs = [r["PublicTest acc"] for r in rows if r["model"].split(" ")[0] in ("s0", "s1")
            and r["TTA"] == "none"]
    assert res["seed_table"][0]["PublicTest acc mean"] == pytest.approx(np.mean(accs))
    assert res["runs"]["s0"]["command"].startswith("python -m fer_study train")
    # each run's fit evidence, copied from its own metrics: no TTA, PublicTest at the best epoch
    s0 = next(r for r in rows if r["model"].split(" ")[0] == "s0" and r["TTA"] == "none")
    assert res["runs"]["s0"]["publictest_accuracy"] == pytest.approx(s0[f"{SELECT} acc"],
                                                                    abs=1e-4)
    assert 0.0 <= res["runs"]["s0"]["training_accuracy"] <= 1.0
    assert res["runs"]["s0"]["training_accuracy_n"] == SIZES["Training"]


def test_a_recipe_is_named_by_its_runs_shared_name_without_the_seed():
    from fer_study.ethics import _seeds_line
    from fer_study.leaderboard import _recipe_name

    assert _recipe_name(["vgg_style_w32_s0", "vgg_style_w32_s1", "vgg_style_w32_s2"],
                        "vgg_style") == "vgg_style_w32"
    assert _recipe_name(["s0", "s1"], "mini_xception") == "mini_xception"
    board = {"seed_table": [{"recipe": "vgg_style_w32", "TTA": "none",
                             "runs": "vgg_style_w32_s0, vgg_style_w32_s1, vgg_style_w32_s2"},
                            {"recipe": "vgg_style_w32", "TTA": "flip", "runs": "x, y, z"}]}
    assert _seeds_line(board).startswith("- Seeds: `vgg_style_w32` (3 seeds); every other")
    assert _seeds_line({}).startswith("- One seed per model")


def test_recipe_ignores_seed_and_folder_only():
    a = RunConfig(seed=0, run_dir="a").to_json()
    assert recipe_key(a) == recipe_key({**a, "seed": 3, "run_dir": "b"})
    assert recipe_key(a) != recipe_key({**a, "lr": 0.5})
    assert recipe_key(a) == recipe_key({**a, "distribution": "auto", "mlflow": "mlruns"})


def test_a_config_written_before_a_field_existed_is_the_same_recipe():
    """Seed 0 of the headline recipe was trained before `precision`, `teacher`, ... existed:
    its config.json lacks them, and it is still one recipe with the later seeds."""
    new = RunConfig(seed=1, precision="float32").to_json()
    old = {k: v for k, v in new.items() if k not in (
        "precision", "teacher", "teacher_weight", "drop_nonfaces", "distribution")}
    assert recipe_key({**old, "seed": 0}) == recipe_key(new)
    # before the option existed training was float32, not the 'auto' of today's default
    assert recipe_key(old) != recipe_key(RunConfig(precision="mixed_bfloat16").to_json())
    # "auto" is keyed by what the run trained in (its metrics), which the machine decided
    auto = RunConfig(seed=2, precision="auto").to_json()
    assert recipe_key(auto, "float32") == recipe_key(new)
    assert recipe_key(auto, "mixed_bfloat16") != recipe_key(auto, "float32")


def test_reproduce_command_round_trips_nondefault_fields():
    cfg = RunConfig(model="vgg_style", epochs=7, label_smoothing=0.1,
                    model_kwargs={"width": 16}).to_json()
    cmd = reproduce_command(cfg)
    assert "--model vgg_style" in cmd and "--epochs 7" in cmd
    assert "--set 'label_smoothing=0.1'" in cmd
    assert """--set 'model_kwargs={"width": 16}'""" in cmd
    assert "--lr" not in cmd  # defaults are left out


def test_bad_input_is_reported(two_seeds, tmp_path, capsys):
    dirs, ds = two_seeds
    with pytest.raises(ValueError, match="ensemble 'e'"):
        build_leaderboard(dirs, ds, ensembles={"e": ["s0", "nope"]}, progress=False)
    with pytest.raises(ModelError, match="not a finished run folder"):
        build_leaderboard([tmp_path], ds, progress=False)
    assert main(["leaderboard", str(dirs[0]), "--data", "synthetic",
                 "--ensemble", "no-equals-sign"]) == 2
    assert "NAME=RUN" in capsys.readouterr().err


def test_cli_writes_json(two_seeds, tmp_path, monkeypatch):
    dirs, _ = two_seeds
    out = tmp_path / "best.json"
    # The CLI loads data by name; the default synthetic sizes differ from the runs' but the
    # split names are the same, which is all the table needs.
    assert main(["leaderboard", *map(str, dirs), "--data", "synthetic", "--tta", "none",
                 "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["selected"] in ("s0", "s1") and res["data"]["synthetic"] is True


def test_greedy_ensemble_grows_only_while_publictest_improves():
    from fer_study.leaderboard import greedy_ensemble

    y = np.array([0, 1, 2, 3])
    eye = np.eye(7)
    unsure = np.array([0.3, 0.1, 0.15, 0.15, 0.1, 0.1, 0.1])  # argmax 0, barely
    a = eye[[0, 1, 2, 0]]
    a[3] = unsure  # 3 of 4 right, unsure where wrong
    b = eye[[0, 1, 0, 3]]
    b[2] = unsure  # 3 of 4 right; the mean of a and b gets all 4
    c = eye[[5, 5, 5, 5]]  # never right
    assert greedy_ensemble({"a": a, "b": b, "c": c}, y) == ["a", "b"]
    assert greedy_ensemble({"c": c}, y) == ["c"]
    # a gain smaller than min_gain is noise: the ensemble stays one run
    assert greedy_ensemble({"a": a, "b": b}, y, min_gain=0.5) == ["a"]


def test_a_run_that_did_not_learn_joins_no_ensemble():
    """Averaging in a near-constant predictor flipped close calls on PublicTest and won the
    real leaderboard by three faces; such a run is left out of greedy ensembles."""
    from fer_study.leaderboard import greedy_ensemble

    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 700)
    good = np.full((700, 7), 0.1)
    good[np.arange(700), y] = 0.2  # right by a margin...
    zero = y == 0
    good[zero, 1] = 0.21  # ...except on class 0, wrong by a hair
    lazy = np.full((700, 7), 0.14)
    lazy[:, 0] = 0.16  # class 0 for every face, tipping exactly those close calls
    both = (good + lazy) / 2
    assert (both.argmax(1) == y).mean() > (good.argmax(1) == y).mean() + 0.1  # the lure
    assert greedy_ensemble({"good": good, "lazy": lazy}, y, min_gain=0.0)[0] == "good"
    assert "lazy" not in greedy_ensemble({"good": good, "lazy": lazy}, y, min_gain=0.0)


def test_spec_file_drives_the_cli_with_intervals_and_paired_tests(two_seeds, tmp_path):
    dirs, _ = two_seeds
    spec = tmp_path / "leaderboard.json"
    out = tmp_path / "best.json"
    spec.write_text(json.dumps({"data": "synthetic",
                                "runs": [str(d) for d in dirs] + [str(tmp_path / "later")],
                                "greedy": True, "tta": ["none"], "output": str(out)}))
    assert main(["leaderboard", "--spec", str(spec)]) == 0
    res = json.loads(out.read_text())
    for row in res["summary_table"]:
        lo, hi = row["PrivateTest acc 95% CI"]
        assert lo <= row["PrivateTest acc"] <= hi and hi - lo > 0
    assert res["command"] is None or "--spec" in res["command"]
    assert res["runs_not_finished"] == [  # listed with the command that trains it, not scored
        {"run": str(tmp_path / "later"), "command": "make runs NAMES=later"}]
    assert set(res["runs"]) == {"s0", "s1"}
    for t in res["PrivateTest_paired_tests"]:
        assert 0.0 <= t["p_value"] <= 1.0 and t["verdict"]
    spec.write_text(json.dumps({"runs": []}))
    assert main(["leaderboard", "--spec", str(spec)]) == 2


def test_study_runs_and_extra_runs_join_the_spec_once(two_seeds, tmp_path):
    """Notebook 04 passes its own runs; those the spec already lists are not scored twice,
    and a study run that has not been trained names the study command."""
    from fer_study.leaderboard import leaderboard_from_spec

    dirs, _ = two_seeds
    full = tmp_path / "full48"  # sees the whole 48 px face: its ten-crop is its flip
    train(RunConfig(**{**FAST, "input_size": 48}, run_dir=str(full)))
    spec = {"data": "synthetic", "runs": [str(dirs[0])],
            "study_runs": [str(dirs[1]), str(tmp_path / "cpu" / "baseline_cnn")],
            "tta": ["none", "flip", "tencrop"]}
    res = leaderboard_from_spec(spec, extra_runs=[dirs[1], dirs[0], full], progress=False)
    assert set(res["runs"]) == {"s0", "s1", "full48"}
    assert [r["command"] for r in res["runs_not_finished"]] == [
        "make study PROFILE=cpu DATA=synthetic"]
    scored = {(r["model"].split(" ")[0], r["TTA"]) for r in res["summary_table"]}
    assert {("s0", "tencrop"), ("full48", "none"), ("full48", "flip")} <= scored
    assert ("full48", "tencrop") not in scored


def test_reference_tests_compare_every_run_with_the_reference(two_seeds):
    """The ablation table: each run and TTA mode minus the reference without TTA, paired."""
    dirs, ds = two_seeds
    res = build_leaderboard(dirs, ds, ttas=("none", "flip"), progress=False, reference="s0")
    rows = {(r["run"], r["TTA"]): r for r in res["reference_tests"]}
    assert set(rows) == {("s0", "none"), ("s0", "flip"), ("s1", "none"), ("s1", "flip")}
    assert rows[("s0", "none")]["PrivateTest diff vs reference (points)"] == 0.0
    assert "verdict" not in rows[("s0", "none")]
    assert rows[("s1", "flip")]["against"] == "s0 (flip)"  # one change at a time
    assert rows[("s0", "flip")]["against"] == "s0 (none)"
    r = rows[("s1", "none")]
    assert r["PrivateTest diff vs reference (points)"] == pytest.approx(
        100 * (r["PrivateTest acc"] - rows[("s0", "none")]["PrivateTest acc"]), abs=0.01)
    lo, hi = r["PrivateTest diff 95% CI"]
    assert lo <= r["PrivateTest diff vs reference (points)"] <= hi
    assert 0 <= r["PrivateTest McNemar p"] <= 1
    with pytest.raises(ConfigError, match="reference run"):
        build_leaderboard(dirs, ds, ttas=("flip",), progress=False, reference="s0")
