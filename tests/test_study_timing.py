"""Unit and behavioural tests of `python -m fer_study time-study` (fer_study.study_timing)."""

from __future__ import annotations

import json
import sys

import pytest

from fer_study.errors import ConfigError
from fer_study.study_timing import (
    time_study,
    timing_command,
    timing_line,
    timing_record,
    user_command,
)

HOST = {"cpu": "Test CPU", "logical_cores": 2}
MANIFEST = {"stages": {
    "01_data_exploration": {"seconds": 20.0, "status": "ok", "result_status": "ok"},
    "02_baseline_cnn": {"seconds": 600.0, "status": "ok", "result_status": "ok"},
    "03_transfer_learning__vgg16": {"seconds": 7.0, "status": "ok",
                                    "result_status": "not run: weights unavailable"}}}


def test_the_record_splits_wall_time_into_stages_and_setup_and_checks_idleness():
    rec = timing_record("cpu", user_command("cpu", "x/fer2013.csv", "y/fer2013new.csv"),
                        "abc", wall_s=1000.0, returncode=0, manifest=MANIFEST,
                        other_cpu_s=50.0, study_cpu_s=1900.0, load_before=[0.1, 0.2, 0.3],
                        host=HOST)
    assert rec["user_command"] == ("make study PROFILE=cpu DATA=data/fer2013.csv "
                                   "FERPLUS=data/fer2013new.csv ARGS=--force")
    assert rec["stage_seconds"] == 627.0 and rec["setup_and_overhead_seconds"] == 373.0
    assert rec["other_processes_share"] == 0.025 and rec["idle"] is True  # 50 / (1000 x 2)
    assert rec["stages_not_run"] == ["03_transfer_learning__vgg16"]
    assert rec["summary_table"][-1] == {"stage": "total (wall clock)", "seconds": 1000.0,
                                        "result": ""}
    line = timing_line(rec)
    assert "took **16.7 min**" in line and "otherwise idle" in line
    assert "`03_transfer_learning__vgg16`" in line and "failed" not in line

    cmd = timing_command("cpu", "data/fer2013.csv", "my data/fer2013new.csv")
    assert cmd == ("python -m fer_study time-study --profile cpu --data data/fer2013.csv "
                   "--ferplus 'my data/fer2013new.csv'")
    assert timing_command("demo", None, None) == "python -m fer_study time-study --profile demo"
    timed = timing_record("cpu", ["make", "study"], "abc", 1000.0, 0, MANIFEST, 0.0, 1.0,
                          None, host=HOST, timed_by=cmd)
    assert timed["command"] == cmd and f"(`{cmd}`, which clones the commit" in \
        timing_line(timed)

    busy = timing_record("cpu", ["make", "study"], "abc", 1000.0, 2, MANIFEST, 400.0, 1.0,
                         None, host=HOST)
    assert busy["idle"] is False and busy["status"] == "failed"
    assert "not idle" in timing_line(busy) and "**failed** (exit status 2)" in timing_line(busy)


def test_time_study_runs_the_command_in_a_fresh_clone_with_the_data(tmp_path):
    data = tmp_path / "fer2013.csv"
    data.write_text("emotion,pixels,Usage\n")
    # stands in for `make study`: needs the copied data and writes the study manifest
    fake = ("import json, pathlib, sys, time; assert pathlib.Path('data/fer2013.csv').is_file(); "
            "time.sleep(0.3); "
            "assert pathlib.Path('fer_study').is_dir(); "
            "p = pathlib.Path('reports/results'); p.mkdir(parents=True, exist_ok=True); "
            f"(p / 'study_manifest.json').write_text(json.dumps({MANIFEST!r}))")
    out = tmp_path / "timing.json"
    lines = []
    res = time_study("cpu", str(data), None, output=out, workdir=str(tmp_path),
                     command=[sys.executable, "-c", fake], echo=lines.append)
    assert res["status"] == "ok" and res["returncode"] == 0
    assert res["stage_seconds"] == 627.0 and res["wall_seconds"] >= 0.3
    assert res["data"]["name"] == "fer2013.csv" and len(res["data"]["sha256"]) == 64
    assert res["machine"]["logical_cores"] >= 1 and 0.0 <= res["other_processes_share"]
    assert json.loads(out.read_text())["commit"] == res["commit"]
    assert res["command"] == f"python -m fer_study time-study --profile cpu --data {data}"
    assert not list(tmp_path.glob("fer-study-timing-*")), "the clone is removed"
    assert any(line.startswith("ok: ") for line in lines)


def test_a_failing_study_is_recorded_as_failed(tmp_path):
    res = time_study("demo", output=tmp_path / "t.json", workdir=str(tmp_path),
                     command=[sys.executable, "-c", "raise SystemExit(3)"], echo=lambda _: None)
    # the clone's committed manifest is not this run's: no stage is reported
    assert res["status"] == "failed" and res["returncode"] == 3
    assert res["stage_seconds"] == 0 and res["stages_not_run"] == []
    assert res["data"]["synthetic"] is True


def test_a_missing_data_file_is_a_clear_error_before_any_clone(tmp_path):
    with pytest.raises(ConfigError, match="data file not found"):
        time_study("cpu", str(tmp_path / "nope.csv"), workdir=str(tmp_path))
    assert not list(tmp_path.iterdir())
