"""The notebook API (open_notebook and its helpers), the demo clip and the latency timer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fer_study.errors import ConfigError, ModelError
from fer_study.notebook import (
    fer_package_reference,
    open_notebook,
    resolve_model_run,
    selection_note,
)
from fer_study.results import SYNTHETIC_BANNER

SIZES = {"Training": 14, "PublicTest": 7, "PrivateTest": 7}


def _params(tmp_path, **kw) -> dict:
    return {"profile": "demo", "data": "synthetic", "ferplus": None, "synthetic_sizes": SIZES,
            "runs_dir": str(tmp_path / "runs"), "reports_dir": str(tmp_path / "rep"),
            "seed": 0, **kw}


def test_open_notebook_loads_data_shows_the_banner_and_writes_the_format(tmp_path,
                                                                         monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False: shown.append(obj))
    nb = open_notebook("05_gradcam", _params(tmp_path, max_images="auto"))
    assert nb.stage == "05_gradcam" and len(nb.ds) == 28 and nb.ds.is_synthetic
    assert shown[0]["text/plain"] == SYNTHETIC_BANNER
    import matplotlib.pyplot as plt

    fig = plt.figure()
    nb.savefig(fig, "maps")
    path = nb.write({"value": 1.5})
    res = json.loads(path.read_text())
    assert path == tmp_path / "rep" / "results" / "05_gradcam.json"
    assert res["figures"] == ["figures/05_gradcam_maps.png"] and res["format"] == 1
    assert res["study"]["command"] == "make study PROFILE=demo" and res["value"] == 1.5
    assert (tmp_path / "rep" / "figures" / "05_gradcam_maps.png").is_file()
    # "auto" is the profile's value; anything else is checked
    assert nb.value("max_images", "auto") == 210 and nb.value("max_images", None) is None
    with pytest.raises(ConfigError, match="positive int"):
        nb.value("max_images", 0)


def test_repeated_notebooks_and_missing_parameters(tmp_path):
    nb = open_notebook("03_transfer_learning", _params(tmp_path, backbone="vgg16"),
                       load_data=False)
    assert nb.stage == "03_transfer_learning__vgg16" and nb.ds is None
    assert nb.value("backbone_size", "auto") == 48  # the demo's per-backbone value
    with pytest.raises(ConfigError, match=r"lacks the study parameter\(s\) \['seed'\]"):
        open_notebook("01_data_exploration", {k: v for k, v in _params(tmp_path).items()
                                              if k != "seed"})


def test_resolve_model_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    with pytest.raises(ModelError, match="04_model_comparison.json"):
        resolve_model_run(None, runs, reports)
    (runs / "baseline_cnn").mkdir(parents=True)
    (runs / "baseline_cnn" / "best.keras").write_bytes(b"x")
    assert resolve_model_run(None, runs, reports) == runs / "baseline_cnn"
    (runs / "vgg").mkdir()
    (runs / "vgg" / "best.keras").write_bytes(b"x")
    (reports / "results").mkdir(parents=True)
    (reports / "results" / "04_model_comparison.json").write_text(
        json.dumps({"best_run_dir": "runs/vgg"}))
    assert resolve_model_run(None, "runs", "reports") == tmp_path / "runs" / "vgg"
    assert resolve_model_run(runs / "baseline_cnn", runs, reports) == runs / "baseline_cnn"
    with pytest.raises(ModelError, match="nope"):
        resolve_model_run(tmp_path / "nope", runs, reports)


def test_selection_note_says_when_a_member_stands_in_for_a_selected_ensemble(tmp_path,
                                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    comp = {"best_run_dir": "runs/w32_s2", "best_model": "w32_s2",
            "best_selection_accuracy": 0.6796,
            "leaderboard": {"selected": "greedy_tencrop", "selected_tta": "tencrop",
                            "selected_runs": ["w32_s2", "w32_s0"]}}
    note = selection_note(comp, "runs/w32_s2")
    assert note.startswith("the best single network on PublicTest")
    assert "0.6796 without TTA" in note
    assert "ensemble `greedy_tencrop` (w32_s2 + w32_s0, TTA tencrop)" in note
    assert "stands in for it" in note
    alone = {**comp, "leaderboard": {"selected": "w32_s2", "selected_runs": ["w32_s2"]}}
    assert "ensemble" not in selection_note(alone, "runs/w32_s2")
    assert selection_note(comp, "runs/baseline_cnn").startswith("no PublicTest selection")
    assert selection_note(comp, "runs/w32_s2", given=True).startswith("given as the model_run")


def test_fer_bar_is_read_from_the_benchmark_never_typed_in(tmp_path):
    """Notebook 06's bar comes from the robustness benchmark's results file; without it
    there is no number, only the command that measures one."""
    missing = fer_package_reference(tmp_path, search_repo=False)
    assert missing["value"] is None and "benchmark_robustness.py" in missing["source"]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "benchmark_robustness.json").write_text(json.dumps({
        "command": "python scripts/benchmark_robustness.py --data d.csv", "images": 1000,
        "split": "PrivateTest", "data": {"dataset": "FER2013"},
        "fer": {"relative_robustness": 0.6543, "clean_accuracy": 0.66}}))
    ref = fer_package_reference(tmp_path)  # found first, before the repository's own
    assert ref["value"] == 0.6543 and ref["clean_accuracy"] == 0.66
    assert "--data d.csv" in ref["source"] and "1000 FER2013 PrivateTest" in ref["source"]


def test_repo_relative_paths_in_results(tmp_path):
    from fer_study.provenance import REPO_ROOT, repo_relative

    assert repo_relative(REPO_ROOT / "runs" / "cpu" / "x") == "runs/cpu/x"
    assert repo_relative(tmp_path) == str(tmp_path)


def test_demo_video_and_latency_table(tmp_path):
    from fer_study.demo_video import compose_demo_video, read_frames
    from fer_study.timing import stage_latency_table, summarise_ms, time_calls

    path = compose_demo_video(tmp_path / "clip.mp4", n_frames=4, fps=4)
    frames = read_frames(path, [0, 3, 10])
    assert len(frames) == 2 and frames[0].shape == (480, 640, 3)
    assert not np.array_equal(frames[0], frames[1])  # the face moves
    rows = stage_latency_table({"detect": [0.002, 0.004], "classify": [], "total": [0.01]})
    assert [r["stage"] for r in rows] == ["detect", "total"]
    assert rows[0]["median_ms"] == pytest.approx(3.0) and rows[0]["frames"] == 2
    assert summarise_ms([0.001, 0.002, 0.003, 0.004, 0.1])["median_ms"] == pytest.approx(3.0)
    calls = []
    out = time_calls(lambda: calls.append(1), calls=4, warmup=2)
    assert len(calls) == 6 and out["calls"] == 4 and out["warmup"] == 2
