"""Published FER2013 figures beside ours: the citations file, the table built from our
results files (with "not run" rows when a file is missing), and the `fer` caveats."""

from __future__ import annotations

import pytest

from fer_study.published import fer_comparison_lines, load_published, published_table

ENTRIES = [
    {"id": "a", "cite": "Author 2020", "model": "big net", "accuracy": 0.73,
     "split": "PublicTest", "split_key": "PublicTest", "selection": "PrivateTest",
     "selected_on_test": True, "setup": "300 epochs on a GPU", "ours": "selected"},
    {"id": "b", "cite": "Capstone", "model": "VGG16", "accuracy": 0.681, "split": "test",
     "selection": "not stated", "setup": "224 px", "ours": "vgg16"},
    {"id": "c", "cite": "Ens 2016", "model": "ensemble", "accuracy": 0.752,
     "split": "PrivateTest", "selection": "PublicTest", "setup": "8 nets", "ours": "ensemble"},
    {"id": "d", "cite": "Arriaga 2017", "model": "mini-Xception", "accuracy": 0.66,
     "split": "not stated", "selection": "PublicTest + PrivateTest", "selected_on_test": True,
     "setup": "64 px", "ours": "shipped", "measured_here": "fer"},
]
BOARD = {"selected": "w32", "selected_tta": "tencrop", "selected_runs": ["w32"],
         "selected_privatetest_accuracy": 0.7055, "selected_publictest_accuracy": 0.6801,
         "summary_table": [{"model": "w32 (selected)", "TTA": "tencrop", "runs": 1,
                            "PrivateTest acc": 0.7055, "PublicTest acc": 0.6801,
                            "params": 1242151, "epochs": "60", "train time (min)": 121.2,
                            "hardware": "CPU x2"}],
         "seed_table": [{"runs": "w32, w32b", "TTA": "tencrop", "PrivateTest acc mean": 0.7,
                         "PrivateTest acc sd": 0.004}],
         "runs": {"w32": {"config": {"input_size": 44}}}, "ensembles": {}}
COMP = {"study": {"profile": "cpu"},
        "summary_table": [{"model": "vgg16", "status": "not run: weights unavailable"}],
        "not_run": [{"model": "vgg16", "command": "make study ARGS=vgg16"}]}
SHIPPED = {"params": 312087, "input_size": 44, "members": [{"epochs_run": 60}],
           "metrics": {"PrivateTest": {"none": {"accuracy": 0.6712}}}}
REALTIME = {"command": "python scripts/benchmark_realtime.py", "frame_size": [640, 480],
            "machine": {"cpu_model": "CPU", "logical_cores": 2},
            "accuracy": {"split": "PrivateTest", "ours": 0.6712, "fer": 0.6578},
            "detectors": {"yunet": "YuNet at 320 px", "haar_min50": "Haar, minSize 50"},
            "fer": {"detector": "Haar on the full frame", "classifier": "mini-Xception"},
            "headline": {"scene": "s", "ours_fps": 250.0, "fer_fps": 17.7, "fps_ratio": 14.1},
            "runs": [{"detector": "haar_min50", "scene": "s", "detect_every": 1,
                      "fps_ratio_medians": 2.27}]}


def test_table_reads_our_figures_from_the_results_files():
    results = {"best_models": BOARD, "04_model_comparison": COMP,
               "benchmark_realtime": REALTIME}
    rows = {r["published (citation, not ours)"]: r
            for r in published_table(results, ENTRIES, shipped=SHIPPED)}
    a = rows["Author 2020: big net"]
    assert a["our PrivateTest acc"] == 0.7055 and a["gap (points)"] == -2.45
    assert "chosen on a test split" in a["why the gap"]
    assert "Their figure is on PublicTest, where ours is 0.6801" in a["why the gap"]
    assert "1,242,151 parameters, 60 epochs" in a["why the gap"]
    assert "mean over seeds (w32, w32b): 0.7 ± 0.004" in a["why the gap"]
    assert "Ours: fit on Training, select on PublicTest, report PrivateTest once" in \
        a["protocol (theirs; ours)"]
    vgg = rows["Capstone: VGG16"]
    assert vgg["our PrivateTest acc"] == "not run: weights unavailable"
    assert vgg["gap (points)"] is None and "make study ARGS=vgg16" in vgg["why the gap"]
    ens = rows["Ens 2016: ensemble"]
    assert str(ens["our PrivateTest acc"]).startswith("not run: no ensemble scored")
    d = rows["Arriaga 2017: mini-Xception"]
    assert d["our PrivateTest acc"] == 0.6712 and "measured here on PrivateTest: 0.6578" in \
        d["why the gap"]


def test_a_single_network_figure_is_set_beside_our_best_single_network_not_an_ensemble():
    ens_row = {"model": "greedy (selected)", "TTA": "tencrop", "runs": 2,
               "PrivateTest acc": 0.7077, "PublicTest acc": 0.6896, "params": 2484302,
               "epochs": "60 + 60", "train time (min)": 183.2, "hardware": "CPU x2"}
    board = {**BOARD, "selected": "greedy", "selected_runs": ["w32", "w32b"],
             "selected_privatetest_accuracy": 0.7077, "selected_publictest_accuracy": 0.6896,
             "summary_table": [{**BOARD["summary_table"][0], "model": "w32"}, ens_row],
             "best_single": {"run": "w32", "tta": "tencrop"},
             "ensembles": {"greedy": ["w32", "w32b"]}}
    single = {**ENTRIES[0], "ours": "best_single"}
    rows = published_table({"best_models": board}, [single, ENTRIES[0], ENTRIES[2]],
                           shipped={})
    assert rows[0]["our PrivateTest acc"] == 0.7055
    assert "`w32` (tencrop), best single network on PublicTest" in rows[0]["ours"]
    assert "where ours is 0.6801" in rows[0]["why the gap"]
    assert "mean over seeds (w32, w32b)" in rows[0]["why the gap"]
    assert rows[1]["our PrivateTest acc"] == 0.7077  # "selected" is the ensemble
    assert rows[2]["our PrivateTest acc"] == 0.7077 and "60 + 60 epochs" in rows[2]["why the gap"]
    # when the selected model is itself one network, it is the best single one
    alone = published_table({"best_models": BOARD}, [single], shipped={})[0]
    assert alone["our PrivateTest acc"] == 0.7055 and "selected" in alone["ours"]


def test_published_single_networks_are_compared_with_our_best_single_network():
    single = {e["id"]: e["ours"] for e in load_published()}
    assert single["pramerdorfer2016_single"] == single["khaireddin2021"] == "best_single"
    assert single["pramerdorfer2016_ensemble"] == "ensemble"


def test_missing_results_files_give_not_run_rows_never_numbers():
    rows = published_table({}, ENTRIES, shipped={})
    assert [r["our PrivateTest acc"] for r in rows] == [
        "not run: no leaderboard yet", "not run", "not run: no leaderboard yet", "not run"]
    assert "make runs && make leaderboard" in rows[0]["why the gap"]
    assert all(r["gap (points)"] is None for r in rows)


def test_fer_caveats_name_the_selection_and_both_sides_detectors():
    rob = {"images": 1000, "split": "PrivateTest", "ours": {"clean_accuracy": 0.662},
           "fer": {"clean_accuracy": 0.667}}
    lines = fer_comparison_lines({"benchmark_realtime": REALTIME,
                                  "benchmark_robustness": rob}, ENTRIES)
    assert "chosen on PublicTest + PrivateTest" in lines[0]
    assert "ours 0.6712 vs `fer` 0.6578" in lines[0] and "ours 0.662 vs `fer` 0.667" in lines[0]
    assert "`yunet` = YuNet at 320 px" in lines[1] and "`fer`: Haar on the full frame" in lines[1]
    assert "14.1x" in lines[1] and "(`haar_min50`) the ratio is 2.27x" in lines[1]
    assert fer_comparison_lines({}, ENTRIES)[1:] == []


def test_the_committed_citations_are_labelled_and_complete():
    entries = load_published()
    assert len({e["id"] for e in entries}) == len(entries)
    keys = {"cite", "source", "model", "accuracy", "split", "selection", "setup", "ours"}
    for e in entries:
        assert keys <= set(e), e["id"]
        assert 0.5 < e["accuracy"] < 0.8, e["id"]  # fractions, not percentages
    figures = {e["id"]: e["accuracy"] for e in entries}
    assert figures["khaireddin2021"] == pytest.approx(0.7328)
    assert figures["capstone_vggface"] == pytest.approx(0.7494)
