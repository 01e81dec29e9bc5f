"""The results layer: stage names, the results format (validated on write, versioned on
read), and the committed real-data results still rendering to the committed report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fer_study.errors import ResultsError
from fer_study.results import (
    RESULTS_FORMAT,
    read_result,
    read_results,
    records,
    run_stage,
    stage_name,
    study_block,
    validate_result,
    write_result,
)

REPO = Path(__file__).resolve().parents[1]
PROV = {"dataset": "synthetic demo set", "synthetic": True, "seed": 0,
        "split_sizes": {"Training": 70}}
STUDY = study_block("demo", "synthetic", None, 0)


def test_stage_names():
    assert stage_name("03_transfer_learning", "vgg16") == "03_transfer_learning__vgg16"
    assert stage_name("05_gradcam") == "05_gradcam"
    assert run_stage("baseline_cnn") == "02_baseline_cnn"
    assert run_stage("vgg16") == "03_transfer_learning__vgg16"
    assert STUDY == {"profile": "demo", "data": "synthetic", "ferplus": None, "seed": 0,
                     "command": "make study PROFILE=demo"}


def test_write_result_stamps_validates_and_makes_strict_json(tmp_path):
    path = write_result(tmp_path, "05_gradcam", {"accuracy": 0.5, "gap": float("nan"),
                                                 "summary_table": [{"a": 1}]},
                        PROV, STUDY, figures=["figures/05_gradcam_maps.png"])
    text = path.read_text()
    assert path == tmp_path / "results" / "05_gradcam.json" and "NaN" not in text
    res = json.loads(text)
    assert res["format"] == RESULTS_FORMAT and res["notebook"] == "05_gradcam"
    assert res["status"] == "ok" and res["synthetic"] is True and res["gap"] is None
    assert res["figures"] == ["figures/05_gradcam_maps.png"] and res["study"] == STUDY
    assert {"created_utc", "git", "environment", "hardware"} <= set(res)
    assert read_result(path) == res and read_results(tmp_path) == {"05_gradcam": res}


@pytest.mark.parametrize("payload, kwargs, message", [
    ({"status": "x"}, {}, "reserved by the format"),
    ({"summary_table": {"a": 1}}, {}, "'summary_table' must be a list of row objects"),
    ({"summary_tables": {"t": [1, 2]}}, {}, "summary table 't' must be a list"),
    ({}, {"figures": ["plots/x.png"]}, "figure 'plots/x.png' is not under figures/"),
    ({}, {"study": {"profile": "demo"}}, "'study' must have exactly the keys"),
    ({"obj": object()}, {}, "not JSON serialisable"),
])
def test_write_result_refuses_what_the_format_does_not_allow(tmp_path, payload, kwargs,
                                                             message):
    args = {"figures": [], "study": STUDY, **kwargs}
    with pytest.raises((ResultsError, TypeError), match=message):
        write_result(tmp_path, "05_gradcam", payload, PROV, args["study"], args["figures"])
    assert not (tmp_path / "results" / "05_gradcam.json").exists()


def test_validate_names_every_problem():
    with pytest.raises(ResultsError) as err:
        validate_result({"format": 1, "notebook": "05_x", "status": 3, "synthetic": "no"})
    msg = str(err.value)
    for part in ("'status' must be str", "'synthetic' must be bool", "missing 'figures'",
                 "missing 'data'"):
        assert part in msg


def test_reading_older_newer_and_broken_files(tmp_path):
    d = tmp_path / "results"
    d.mkdir()
    (d / "01_old.json").write_text(json.dumps({"status": "ok"}))  # before the format
    assert read_result(d / "01_old.json") == {"status": "ok"}
    (d / "02_new.json").write_text(json.dumps({"format": RESULTS_FORMAT + 1}))
    with pytest.raises(ResultsError, match="newer than this package reads"):
        read_result(d / "02_new.json")
    (d / "03_bad.json").write_text("{not json")
    with pytest.raises(ResultsError, match="not valid JSON"):
        read_result(d / "03_bad.json")
    (d / "best_models.json").write_text(json.dumps({"format": 99}))  # not a stage: free form
    assert read_result(d / "best_models.json") == {"format": 99}


def test_records_are_json_ready():
    import numpy as np
    import pandas as pd

    df = pd.DataFrame([{"a": 0.123456, "n": 3.0, "b": np.float32(2.5)},
                       {"a": float("nan"), "n": None, "b": 1.0}])
    assert records(df) == [{"a": 0.123, "n": 3, "b": 2.5}, {"a": None, "n": None, "b": 1.0}]


def test_committed_results_render_the_committed_report_and_readme(tmp_path):
    """The real-data study's results (written before the format had a version) still read,
    and `python -m fer_study report` re-makes the committed REPORT.md and README section."""
    from fer_study.readme import update_readme
    from fer_study.report import build_report

    reports = tmp_path / "reports"
    shutil.copytree(REPO / "reports" / "results", reports / "results")
    readme = tmp_path / "README.md"
    shutil.copy(REPO / "README.md", readme)
    build_report(reports)
    update_readme(readme, reports_dir=reports)
    assert (reports / "REPORT.md").read_text() == (REPO / "reports" / "REPORT.md").read_text()
    assert readme.read_text() == (REPO / "README.md").read_text()
