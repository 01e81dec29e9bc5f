"""REPORT.md / REPORT.html and the README section from hand-written results files: every
table shows the JSON's numbers, checked against cells written out here by hand."""

from __future__ import annotations

import json

import pytest
from conftest import parse_md_table

from fer_study.errors import ResultsError
from fer_study.labels import EMOTIONS
from fer_study.readme import readme_results, update_readme
from fer_study.report import build_report
from fer_study.results import SYNTHETIC_BANNER, read_results

SYNTH = {"dataset": "synthetic demo set (procedurally drawn faces, NOT FER2013)",
         "format": "synthetic", "synthetic": True, "seed": 0,
         "sizes": {"Training": 70, "PublicTest": 35, "PrivateTest": 35},
         "split_sizes": {"Training": 70, "PublicTest": 35, "PrivateTest": 35}}
REAL = {"dataset": "FER2013", "format": "csv", "path": "/data/fer2013.csv", "synthetic": False,
        "sha256": "ab" * 32, "split_sizes": {"Training": 28709, "PublicTest": 3589,
                                             "PrivateTest": 3589}}
STUDY = {"profile": "demo", "data": "synthetic", "ferplus": None,
         "command": "make study PROFILE=demo"}
META = {"created_utc": "2026-11-22T12:00:00Z", "git": {"commit": "0123456789abcdef",
                                                       "dirty": False},
        "hardware": {"cpu": "Test CPU", "cpu_count": 2, "keras_backend": "tensorflow"}}

ROWS = [
    {"model": "baseline_cnn", "kind": "scratch", "pretrained weights": "none (random init)",
     "status": "ok", "Training acc": 0.61234, "PublicTest acc": 0.51234,
     "PrivateTest acc": 0.50123, "PublicTest macro-F1": 0.4567, "PrivateTest macro-F1": 0.4455,
     "params": 2345607, "size (MB)": 28.21, "CPU latency (ms/img)": 3.217,
     "train time (s)": 1234.5, "epochs": 10},
    {"model": "efficientnet_lite0", "kind": "transfer", "pretrained weights": "imagenet",
     "status": "ok", "Training acc": 0.7, "PublicTest acc": 0.6049, "PrivateTest acc": 0.5998,
     "PublicTest macro-F1": 0.55, "PrivateTest macro-F1": 0.5412, "params": 3742759,
     "size (MB)": 24.52, "CPU latency (ms/img)": 8.9, "train time (s)": 3600.0, "epochs": 6},
    {"model": "vgg16", "kind": "transfer", "pretrained weights": "imagenet",
     "status": "not run: weights unavailable"},
]
# The comparison table as the report must print it (4 significant digits, thousands
# separators, a dash for a missing value), typed out from ROWS by hand.
TABLE = [
    {"model": "baseline_cnn", "kind": "scratch", "pretrained weights": "none (random init)",
     "status": "ok", "Training acc": "0.6123", "PublicTest acc": "0.5123",
     "PrivateTest acc": "0.5012", "PublicTest macro-F1": "0.4567",
     "PrivateTest macro-F1": "0.4455", "params": "2,345,607", "size (MB)": "28.21",
     "CPU latency (ms/img)": "3.217", "train time (s)": "1,234", "epochs": "10"},
    {"model": "efficientnet_lite0", "kind": "transfer", "pretrained weights": "imagenet",
     "status": "ok", "Training acc": "0.7", "PublicTest acc": "0.6049",
     "PrivateTest acc": "0.5998", "PublicTest macro-F1": "0.55", "PrivateTest macro-F1": "0.5412",
     "params": "3,742,759", "size (MB)": "24.52", "CPU latency (ms/img)": "8.9",
     "train time (s)": "3,600", "epochs": "6"},
    {"model": "vgg16", "kind": "transfer", "pretrained weights": "imagenet",
     "status": "not run: weights unavailable", "Training acc": "—", "PublicTest acc": "—",
     "PrivateTest acc": "—", "PublicTest macro-F1": "—", "PrivateTest macro-F1": "—",
     "params": "—", "size (MB)": "—", "CPU latency (ms/img)": "—", "train time (s)": "—",
     "epochs": "—"},
]
PER_CLASS = [{"model": "baseline_cnn", **{e: round(0.1 * (i + 1), 3)
                                          for i, e in enumerate(EMOTIONS)}},
             {"model": "efficientnet_lite0", **{e: round(0.05 * (i + 2), 3)
                                                for i, e in enumerate(EMOTIONS)}}]


def _write(d, name: str, obj: dict) -> None:
    (d / "results").mkdir(parents=True, exist_ok=True)
    (d / "results" / f"{name}.json").write_text(json.dumps(obj))


def _fixture(tmp_path, data=SYNTH, data04=None):
    d = tmp_path / "reports"
    counts = {s: {e: 10 for e in EMOTIONS} for s in ("Training", "PublicTest", "PrivateTest")}
    counts["Training"]["Disgust"] = 1
    _write(d, "01_data_exploration", {
        "notebook": "01_data_exploration", "status": "ok", "class_counts": counts,
        "summary_table": [{"split": s, **c, "total": sum(c.values())} for s, c in counts.items()],
        "duplicates": {"method": "exact / aHash", "exact_pairs": 3, "near_pairs": 17,
                       "by_split_pair": {"PublicTest–Training": {"exact": 2, "near": 11}}},
        "ferplus": None, "figures": ["figures/01_data_exploration_samples.png"],
        "study": STUDY, "data": data, **META})
    _write(d, "04_model_comparison", {
        "notebook": "04_model_comparison", "status": "ok", "selection_split": "PublicTest",
        "report_split": "PrivateTest", "best_model": "efficientnet_lite0",
        "best_run_dir": "runs/demo/efficientnet_lite0", "best_selection_accuracy": 0.6049,
        "best_report_accuracy": 0.5998, "summary_table": ROWS, "per_class_f1": PER_CLASS,
        "not_run": [{"model": "vgg16", "status": "not run: weights unavailable",
                     "reason": "offline", "command": "make study PROFILE=demo ARGS=..."}],
        "methods_table": [{"model": "baseline_cnn", "data": "synthetic", "train images": 70,
                           "Training images": 70, "wall time (s)": 12.5}],
        "references": {"chance": 1 / 7, "human": 0.65, "human_source": "Goodfellow 2013"},
        "figures": ["figures/04_model_comparison_accuracy.png"],
        "study": STUDY, "data": data04 or data, **META})
    _write(d, "06_robustness_and_optimisation", {
        "notebook": "06_robustness_and_optimisation", "status": "ok",
        "relative_robustness": 0.8123, "model": "efficientnet_lite0",
        "summary_table": [{"corruption": "blur", "accuracy": 0.41, "severity": 3},
                          {"corruption": "noise", "accuracy": 0.3876, "severity": 3}],
        "summary_tables": {"TFLite exports": [{"format": "int8", "size_kb": 812.3,
                                               "accuracy": 0.598}]},
        "study": {"profile": "demo", "data": "synthetic", "ferplus": None, "seed": 0},
        "data": data, "figures": [], **META})
    _write(d, "efficientnet_lite0_conversion", {"what": "weights check", "passed": True,
                                                "max_abs_logit_diff": 7.1e-06})
    return d


def test_tables_match_the_json(tmp_path):
    d = _fixture(tmp_path)
    out = build_report(d)
    md = out.read_text()
    assert out == d / "REPORT.md" and (d / "REPORT.html").is_file()
    assert parse_md_table(md, "### Model comparison") == TABLE
    assert parse_md_table(md, "### Per-class F1") == [
        {"model": "baseline_cnn", "Angry": "0.1", "Disgust": "0.2", "Fear": "0.3",
         "Happy": "0.4", "Sad": "0.5", "Surprise": "0.6", "Neutral": "0.7"},
        {"model": "efficientnet_lite0", "Angry": "0.1", "Disgust": "0.15", "Fear": "0.2",
         "Happy": "0.25", "Sad": "0.3", "Surprise": "0.35", "Neutral": "0.4"}]
    splits = parse_md_table(md, "**Images per split and class**")
    assert splits[0]["Disgust"] == "1" and splits[0]["total"] == "61"
    # the best model, selected on PublicTest, with its PrivateTest number from the JSON
    assert "Best single network on PublicTest: `efficientnet_lite0`" in md
    assert "0.5998" in md and "runs/demo/efficientnet_lite0" in md


def test_sources_banner_and_generic_sections(tmp_path):
    md = build_report(_fixture(tmp_path)).read_text()
    assert md.count(SYNTHETIC_BANNER) >= 2  # the banner and the explanation under it
    assert md.index(SYNTHETIC_BANNER) < md.index("## Data")
    assert "_Source: `results/04_model_comparison.json`, made by `make study PROFILE=demo`._" \
        in md
    # 06 carries no command; the report derives it from the study block
    assert "_Source: `results/06_robustness_and_optimisation.json`, made by " \
           "`make study PROFILE=demo`._" in md
    rob = parse_md_table(md, "## Robustness, calibration")
    assert rob == [{"key": "relative_robustness", "value": "0.8123"},
                   {"key": "model", "value": "efficientnet_lite0"}]
    generic = parse_md_table(md, "| corruption | accuracy | severity |")
    assert generic == [{"corruption": "blur", "accuracy": "0.41", "severity": "3"},
                       {"corruption": "noise", "accuracy": "0.3876", "severity": "3"}]
    assert parse_md_table(md, "**TFLite exports**") == [
        {"format": "int8", "size_kb": "812.3", "accuracy": "0.598"}]
    assert "vgg16` — not run: weights unavailable" in md
    assert "## Other results files" in md and "max_abs_logit_diff" in md
    assert "rarest class in Training, Disgust, has 1 of 61 images" in md
    assert "## How to cite" in md and "fer-study: a reproducible facial emotion recognition " \
        "study on FER2013" in md and "Goodfellow" in md and "Barsoum" in md
    assert "![01_data_exploration_samples](figures/01_data_exploration_samples.png)" in md
    html = (tmp_path / "reports" / "REPORT.html").read_text()
    assert '<div class="banner">' in html and "<table>" in html


def test_real_data_has_no_banner_and_mixed_data_warns(tmp_path):
    md = build_report(_fixture(tmp_path, data=REAL)).read_text()
    assert SYNTHETIC_BANNER not in md
    assert "abababababab" in md  # the file's sha256 in the data table
    assert "come from different data" not in md
    md = build_report(_fixture(tmp_path / "mixed", data=REAL, data04=SYNTH)).read_text()
    assert "come from different data" in md and SYNTHETIC_BANNER in md


def test_no_results_is_an_error(tmp_path):
    with pytest.raises(ResultsError, match="run the study first"):
        build_report(tmp_path)


def test_read_results_skips_the_manifest(tmp_path):
    d = _fixture(tmp_path)
    (d / "results" / "study_manifest.json").write_text("{}")
    assert "study_manifest" not in read_results(d)


def test_results_outside_the_study_plan_are_left_out(tmp_path):
    d = _fixture(tmp_path)
    _write(d, "03_transfer_learning__resnet50", {"status": "ok", "study": STUDY, "data": SYNTH,
                                                 "figures": ["figures/old.png"]})
    (d / "results" / "study_manifest.json").write_text(json.dumps(
        {"plan": ["01_data_exploration", "04_model_comparison"], "stages": {}}))
    md = build_report(d).read_text()
    assert "## Stale results files (left out)" in md
    assert "`results/03_transfer_learning__resnet50.json`" in md
    assert "`results/06_robustness_and_optimisation.json`" in md
    assert "## Robustness, calibration" not in md and "figures/old.png" not in md


BEST = {"title": "Best models (accuracy push)", "status": "ok",
        "selection": "highest PublicTest accuracy over runs, ensembles and TTA modes",
        "selected": "ens", "selected_tta": "tencrop", "selected_runs": ["a", "b"],
        "selected_publictest_accuracy": 0.7012, "selected_privatetest_accuracy": 0.7123,
        "selected_privatetest_macro_f1": 0.6789, "selected_disgust_recall": 0.4545,
        "summary_table": [
            {"model": "a", "TTA": "none", "PublicTest acc": 0.61, "PrivateTest acc": 0.62},
            {"model": "a", "TTA": "tencrop", "PublicTest acc": 0.63, "PrivateTest acc": 0.64},
            {"model": "ens (selected)", "TTA": "tencrop", "PublicTest acc": 0.7012,
             "PrivateTest acc": 0.7123, "Disgust recall": 0.4545}],
        "seed_table": [{"recipe": "mini_xception", "TTA": "none", "PublicTest acc mean": 0.6}],
        "runs": {"a": {"command": "python -m fer_study train --model mini_xception"}},
        "ensembles": {"ens": ["a", "b"]}, "data": REAL, **META}


def test_readme_results_section_is_generated_from_the_json(tmp_path):
    d = _fixture(tmp_path, data=REAL)
    _write(d, "best_models", BEST)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Results\n\n<!-- results:begin -->\nstale 0.99\n"
                      "<!-- results:end -->\n\n## After\n")
    md = build_report(d).read_text()
    update_readme(readme, reports_dir=d)
    text = readme.read_text()
    assert "stale 0.99" not in text and text.endswith("## After\n")
    assert text.count("<!-- results:begin -->") == 1
    comp = parse_md_table(text, "**Study comparison**")
    columns = ("model", "kind", "status", "PublicTest acc", "PrivateTest acc",
               "PrivateTest macro-F1", "params", "epochs", "train time (s)")
    assert comp == [{c: row[c] for c in columns} for row in TABLE]
    best = parse_md_table(text, "**Best models**")
    # one row per model: its best TTA on PublicTest, and the selected row
    assert [(r["model"], r["TTA"]) for r in best] == [("a", "tencrop"),
                                                      ("ens (selected)", "tencrop")]
    assert SYNTHETIC_BANNER not in text
    assert "PrivateTest accuracy 0.7123 (goal 0.7: reached)" in text
    # the report has the full best-model table and the commands
    full = parse_md_table(md, "## Best models (accuracy push)")
    assert len(full) == 3 and full[2]["PrivateTest acc"] == "0.7123"
    assert "python -m fer_study train --model mini_xception" in md
    targets = parse_md_table(md, "**Against the targets**")
    assert [(r["target"], r["status"]) for r in targets] == [
        ("PrivateTest accuracy", "reached"), ("PrivateTest macro-F1", "reached"),
        ("Disgust recall (PrivateTest)", "reached")]
    assert "Why:" not in md  # the runs recorded no Training accuracy
    runs = {"a": {**BEST["runs"]["a"], "training_accuracy": 0.62, "publictest_accuracy": 0.605},
            "b": {"training_accuracy": 0.70, "publictest_accuracy": 0.60}}
    _write(d, "best_models", {**BEST, "selected_privatetest_accuracy": 0.6543,
                              "selected_disgust_recall": 0.31, "runs": runs})
    md = build_report(d).read_text()
    update_readme(readme, reports_dir=d)
    targets = parse_md_table(md, "**Against the targets**")
    assert [r["status"] for r in targets] == ["4.6 points short", "reached", "9.0 points short"]
    assert "Disgust recall (PrivateTest) 0.31 (goal 0.4: 9.0 points short)" in readme.read_text()
    assert targets[0]["selected model"] == "0.6543"
    # the why is computed from the runs: b fits Training 10 points above PublicTest
    assert "`a` 0.62 vs 0.605; `b` 0.7 vs 0.6; the gap is at most 10.0 points" in md
    assert "over-fits" in md
    runs["b"] = {"training_accuracy": 0.61, "publictest_accuracy": 0.60}
    _write(d, "best_models", {**BEST, "runs": runs})
    assert "the recipes under-fit" in build_report(d).read_text()


def test_readme_without_markers_gets_a_section_and_demo_data_is_labelled(tmp_path):
    d = _fixture(tmp_path)  # synthetic
    readme = tmp_path / "README.md"
    readme.write_text("# x\n")
    update_readme(readme, reports_dir=d)
    text = readme.read_text()
    assert text.startswith("# x\n\n## Results\n\n<!-- results:begin -->")
    assert SYNTHETIC_BANNER in text
    update_readme(readme, reports_dir=d)  # regenerating replaces, never duplicates
    assert readme.read_text() == text


def test_cli_report_rebuilds_report_and_readme(tmp_path, capsys):
    from fer_study.cli import main

    d = _fixture(tmp_path, data=REAL)
    readme = tmp_path / "README.md"
    assert main(["report", "--reports-dir", str(d), "--readme", str(readme)]) == 0
    assert (d / "REPORT.md").is_file() and "<!-- results:end -->" in readme.read_text()
    assert main(["report", "--reports-dir", str(tmp_path / "empty"), "--no-readme"]) == 2
    assert "run the study first" in capsys.readouterr().err


def test_pretrained_vs_scratch_is_reported_whichever_way_it_goes(tmp_path):
    from fer_study.comparison import pretrained_vs_scratch

    twin = {"model": "efficientnet_lite0_scratch", "kind": "scratch", "status": "ok",
            "pretrained weights": "none (random init)", "PublicTest acc": 0.6149,
            "PrivateTest acc": 0.6098, "epochs": 6, "train time (s)": 7200.0}
    rows = [*ROWS, twin]
    pvs = pretrained_vs_scratch(rows)
    assert len(pvs) == 1 and pvs[0]["architecture"] == "efficientnet_lite0"
    assert pvs[0]["PrivateTest difference (points)"] == -1.0  # 0.5998 - 0.6098
    d = _fixture(tmp_path, data=REAL)
    res = json.loads((d / "results" / "04_model_comparison.json").read_text())
    res["summary_table"] = rows
    _write(d, "04_model_comparison", res)
    md = build_report(d).read_text()
    table = parse_md_table(md, "### Pretrained vs from scratch")
    assert table[0]["PrivateTest acc scratch"] == "0.6098"
    assert "a difference of -1.00 points: a tie (-1.0 points; one seed each)" in md


def test_sources_name_the_command_each_file_records(tmp_path):
    """A file written by a script is attributed to the command it records, never to the
    study; a file that records nothing and no known script says 'not recorded'."""
    d = _fixture(tmp_path)
    _write(d, "benchmark_realtime", {"command": "python scripts/benchmark_realtime.py --x 1",
                                     "started": "2026-11-23T02:48:43+0000"})
    _write(d, "mystery", {"value": 1})
    md = build_report(d).read_text()
    sources = {r["file"]: r for r in parse_md_table(md, "## Sources")}
    assert sources["results/benchmark_realtime.json"]["command"] == \
        "python scripts/benchmark_realtime.py --x 1"
    assert sources["results/benchmark_realtime.json"]["made"] == "2026-11-23T02:48:43+0000"
    assert sources["results/efficientnet_lite0_conversion.json"]["command"].startswith(
        "python -m fer_study verify-efficientnet-lite")
    assert sources["results/mystery.json"]["command"] == "not recorded"
    assert sources["results/04_model_comparison.json"]["command"] == "make study PROFILE=demo"
    assert "made by `python -m fer_study study`" not in md


def test_readme_benchmark_lines_read_their_numbers_from_the_files(tmp_path):
    d = _fixture(tmp_path, data=REAL)
    _write(d, "benchmark_robustness", {
        "command": "python scripts/benchmark_robustness.py --data d.csv", "images": 1000,
        "split": "PrivateTest", "data": REAL,
        "ours": {"relative_robustness": 0.7741, "clean_accuracy": 0.612},
        "fer": {"relative_robustness": 0.69, "clean_accuracy": 0.667}})
    _write(d, "benchmark_realtime", {
        "command": "python scripts/benchmark_realtime.py", "accuracy": {
            "split": "PrivateTest", "ours": 0.6222, "fer": 0.6578},
        "runs": [{"threads": 1, "faces": 1, "detector": "haar", "detect_every": 5,
                  "ours": {"fps_mean": 161.7}, "fps_ratio_ours_over_fer": 18.27},
                 {"threads": 2, "faces": 3, "detector": "haar", "detect_every": 1,
                  "ours": {"fps_mean": 50.0}, "fps_ratio_ours_over_fer": 5.0}],
        "targets": {"equal_or_better_accuracy_than_fer": False,
                    "haar": {"e2e_ge_30fps": True, "ge_10x_fer_fps": False}}})
    text = readme_results(read_results(d), d)
    assert "the shipped model keeps 0.7741 of its clean accuracy 0.612" in text
    assert "classifier keeps 0.69 of 0.667" in text
    assert "detect every 5: 161.7 FPS, 18.27x `fer`" in text and "50 FPS" not in text
    assert "ours 0.6222, `fer` 0.6578" in text
    assert "Targets not met: equal_or_better_accuracy_than_fer, haar: ge_10x_fer_fps." in text


def test_readme_realtime_line_reads_recall_fps_and_detect_every(tmp_path):
    from fer_study.readme import readme_results

    d = _fixture(tmp_path, data=REAL)
    _write(d, "benchmark_realtime", {
        "command": "python scripts/benchmark_realtime.py --accuracy-data data/fer2013.csv",
        "note": "other jobs ran", "accuracy": {"split": "PrivateTest", "ours": 0.62, "fer": 0.66},
        "recall": {"scenes": {"frames": 200, "fer2013_split": "PrivateTest"},
                   "results": {"haar_min50": {"recall_ge_32px": 0.5993}}},
        "runs": [{"scene": "one_face_80px", "detector": "yunet", "detect_every": 5,
                  "ours": {"fps_mean": 310.5}, "fps_ratio_ours_over_fer": 22.1},
                 {"scene": "one_face_80px", "detector": "haar_min50", "detect_every": 1,
                  "ours": {"fps_median": 25.0}, "fps_ratio_medians": 2.05}],
        "detect_every_tradeoff": [{"detect_every": 1, "delay_frames_mean": 0.0,
                                   "delay_frames_max": 0},
                                  {"detect_every": 5, "delay_frames_mean": 2.0,
                                   "delay_frames_max": 4}],
        "headline": {"scene": "one_face_80px", "ours_fps": 120.3, "fer_fps": 10.1,
                     "fps_ratio": 11.91, "recall_ours": 0.6512, "recall_fer": 0.6213,
                     "false_positives_ours": 12, "false_positives_fer": 60,
                     "e2e_accuracy_ours": 0.35, "e2e_accuracy_fer": 0.36,
                     "e2e_accuracy_detected_ours": 0.58, "e2e_accuracy_detected_fer": 0.6},
        "targets": {"default_ge_10x_fer_fps_one_face": True,
                    "equal_or_better_accuracy_than_fer": False}})
    text = readme_results(read_results(d), d)
    assert "1 thread, medians): default pipeline" in text
    assert "`haar_min50`): 25 FPS, 2.05x `fer`, recall 0.5993" in text
    assert "120.3 FPS vs `fer` 10.1 FPS on a frame with one 80 px face, 11.91x `fer`" in text
    assert "ours 0.6512 (12 false positives), `fer` 0.6213 (60)" in text
    assert "`--detect-every 5`: 310.5 FPS (mean; 22.1x `fer`), a new face found 2 frames " \
        "late on average (at most 4)" in text
    assert "Targets not met: equal_or_better_accuracy_than_fer." in text


def test_majority_class_reference_and_a_scratch_twin_stuck_on_it(tmp_path):
    rows = [*ROWS[:2], {"model": "efficientnet_lite0_scratch", "kind": "scratch",
                        "pretrained weights": "none (random init)", "status": "ok",
                        "PublicTest acc": 0.1429, "PrivateTest acc": 1 / 7, "epochs": 6}]
    d = _fixture(tmp_path)
    res = json.loads((d / "results" / "04_model_comparison.json").read_text())
    res["summary_table"] = rows
    _write(d, "04_model_comparison", res)
    md = build_report(d).read_text()
    # PrivateTest has 10 faces per class in the fixture: the first of the tied classes
    assert "always answering the majority class (Angry) = 0.1429 on PrivateTest" in md
    assert "The scratch model's PrivateTest accuracy is the majority-class rate" in md
    assert "The pretrained model's PrivateTest accuracy is the majority-class" not in md


def test_header_names_the_commits_the_results_came_from(tmp_path):
    from fer_study.report import results_commits

    d = _fixture(tmp_path, data=REAL)
    _write(d, "benchmark_realtime", {"command": "python scripts/benchmark_realtime.py",
                                     "machine": {"git": {"commit": "feedbeef" * 5,
                                                         "dirty": True}}})
    commits = results_commits(read_results(d), shipped={"git": {"commit": "0123456789abcdef",
                                                                "dirty": False}})
    assert [(c["commit"], c["dirty"]) for c in commits] == [
        ("0123456789abcdef", False), ("feedbeef" * 5, True), (None, False)]
    assert commits[0]["files"][-1] == "fer_study/assets/default_model.json"
    md = build_report(d).read_text()
    header = md[:md.index("## Data")]
    assert "`0123456789ab`: `results/01_data_exploration.json`, " \
           "`results/04_model_comparison.json`" in header
    assert "- `feedbeeffeed` + uncommitted changes: `results/benchmark_realtime.json`" in header
    assert "- commit not recorded: `results/efficientnet_lite0_conversion.json`" in header


def test_ethics_published_and_data_effects_sections(tmp_path):
    d = _fixture(tmp_path, data=REAL)
    md = build_report(d).read_text()
    ethics = md[md.index("## Ethics and limitations"):md.index("## How to cite")]
    for needle in ("consent", "demographic", "FER+", "perceived facial expressions",
                   "Barrett et al. 2019", "hiring", "policing", "lie or deception",
                   "Article 5(1)(f)", "### Limitations of these results"):
        assert needle in ethics
    # published figures beside ours; our missing figures are "not run" rows
    table = parse_md_table(md, "## Published FER2013 results beside ours")
    assert any(r["published (citation, not ours)"].startswith("Khaireddin & Chen 2021")
               and r["our PrivateTest acc"] == "not run: no leaderboard yet" for r in table)
    vgg16 = next(r for r in table if r["ours"].startswith("`vgg16`"))
    assert vgg16["our PrivateTest acc"] == "not run: weights unavailable"
    # data effects: not run yet, with the commands that make them
    effects = md[md.index("## Data effects"):]
    assert "Not run yet: `python -m fer_study data-effects" in effects
    assert ('make runs NAMES="vgg_style_w16_e30_float32_s0 '
            'vgg_style_w16_e30_nonfacesdropped_s0"') in effects
    # the synthetic demo has neither FER2013 comparison
    md = build_report(_fixture(tmp_path / "demo")).read_text()
    assert "## Published FER2013" not in md and "## Data effects" not in md
    assert "## Ethics and limitations" in md


def test_readme_ethics_block_is_regenerated(tmp_path):
    d = _fixture(tmp_path, data=REAL)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- results:begin -->\n<!-- results:end -->\n\n## Ethics\n\n"
                      "<!-- ethics:begin -->\nold\n<!-- ethics:end -->\n\n## After\n")
    update_readme(readme, reports_dir=d)
    text = readme.read_text()
    block = text[text.index("<!-- ethics:begin -->"):text.index("<!-- ethics:end -->")]
    assert "old" not in block and "without the consent" in block and "Art. 5(1)(f)" in block
    assert text.endswith("## After\n") and "**Published FER2013 results beside ours**" in text


def test_cost_vs_accuracy_is_readable_at_its_range():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.text import Text

    from fer_study.plots import cost_vs_accuracy

    rows = [{"model": f"model_{i}_with_a_long_name", "status": "ok", "ms": x, "acc": y}
            for i, (x, y) in enumerate([(1.0, 0.60), (1.1, 0.61), (1.2, 0.605), (30.0, 0.50),
                                        (31.0, 0.51), (200.0, 0.70)])]
    fig = cost_vs_accuracy(rows + [{"model": "off", "status": "not run"}], "acc", "ms")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    lo, hi = ax.get_xlim()
    assert lo < 1.0 and hi > 200.0 and hi / lo < 2000  # fitted, not decades of empty axis
    y0, y1 = ax.get_ylim()
    assert 0.4 < y0 < 0.5 and 0.7 < y1 < 0.8  # fitted to the points, not to 0 or chance
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    # the labels' text only (an annotation's own extent includes its leader line)
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]
    assert len(boxes) == 6
    overlaps = [(i, j) for i in range(6) for j in range(i + 1, 6) if boxes[i].overlaps(boxes[j])]
    assert not overlaps
    axes_box = ax.get_window_extent(renderer)
    assert all(axes_box.x0 <= b.x0 and b.x1 <= axes_box.x1 for b in boxes)  # none cut off


def test_uncommitted_changes_mean_code_not_the_studys_own_outputs(tmp_path, monkeypatch):
    import subprocess

    from fer_study import provenance

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "manifest.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-q", "-m", "c")
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    (tmp_path / "reports" / "manifest.json").write_text('{"stage": 1}')  # the runner's own
    assert provenance.git_commit()["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.git_commit()["dirty"] is True
