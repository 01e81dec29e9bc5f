"""Data effects: leaked test faces, FER+ majority labels, non-faces; dropping non-faces."""

from __future__ import annotations

import numpy as np
import pytest

from fer_study.data import DataError, Dataset, FerPlusVotes, drop_training_nonfaces
from fer_study.data_effects import data_effects, leaked_rows


def _ds() -> Dataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 48, 48), dtype=np.uint8)
    usage = np.array(["Training"] * 6 + ["PrivateTest"] * 6)
    images[6] = images[0]  # a PrivateTest face copied from Training...
    images[7] = images[0]  # ...twice: two distinct test rows, one Training image
    labels = np.array([0, 1, 2, 3, 4, 5, 0, 0, 1, 2, 3, 4])
    return Dataset(images, labels, usage, {"format": "csv"})


def _votes(n: int, nonface_rows: list[int], majority: np.ndarray) -> FerPlusVotes:
    named = np.ones(n, bool)
    named[nonface_rows] = False
    keep = named.copy()
    return FerPlusVotes(soft=np.zeros((n, 7), np.float32), majority=np.where(keep, majority, -1),
                        keep=keep, usage=np.array(["x"] * n), sha256="0", named=named,
                        top_nf=np.zeros(n, bool))


def test_leaked_rows_counts_distinct_test_images():
    ds = _ds()
    assert leaked_rows(ds).tolist() == [True, True, False, False, False, False]


def test_data_effects_table():
    ds = _ds()
    y = ds.labels[6:]
    preds = y.copy()
    preds[:2] = 6  # wrong on both leaked faces
    majority = ds.labels.copy()
    majority[8] = 5  # FER+ disagrees with FER2013 on one test face
    votes = _votes(12, [11, 2], majority)
    t = data_effects(ds, preds, votes)
    assert t["all"]["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert t["leakage"]["test_images_also_in_training"] == 2
    assert t["leakage"]["without_them"]["accuracy"] == 1.0
    assert t["leakage"]["on_them"]["accuracy"] == 0.0
    f = t["ferplus"]
    assert f["rows_with_ferplus_label"] == 5  # row 11 is a non-face
    assert f["where_ferplus_agrees_with_fer2013"]["n"] == 4
    assert f["where_ferplus_disagrees"]["n"] == 1
    assert f["nonfaces_per_split"] == {"Training": 1, "PrivateTest": 1}
    assert f["on_nonfaces"]["n"] == 1
    with pytest.raises(ValueError, match="one predicted label"):
        data_effects(ds, preds[:3])


def test_drop_nonfaces_touches_training_only(tmp_path, monkeypatch):
    ds = _ds()
    votes = _votes(12, [2, 11], ds.labels)
    monkeypatch.setattr("fer_study.data.load_ferplus", lambda path: votes)
    out = drop_training_nonfaces(ds, "votes.csv")
    assert len(out) == 11 and (out.usage == "PrivateTest").sum() == 6
    assert out.source["training_nonfaces_dropped"] == 1
    with pytest.raises(DataError, match="FER\\+ votes"):
        drop_training_nonfaces(ds, None)


def test_data_counts_distinct_leaks_ferplus_agreement_and_nonfaces():
    from fer_study.data_effects import data_counts

    ds = _ds()
    majority = ds.labels.copy()
    majority[8] = 5  # FER+ disagrees on one PrivateTest face
    c = data_counts(ds, _votes(12, [2, 11], majority))
    # rows 6 and 7 copy the same Training image: two distinct leaked test images
    assert c["leaked"] == {"PrivateTest": {"test_images": 6, "also_in_training": 2}}
    agree = c["ferplus"]["agreement"]
    assert agree["PrivateTest"] == {"rows_with_ferplus_label": 5, "agreeing": 4,
                                    "agreement": 0.8}
    assert agree["Training"]["agreement"] == 1.0
    assert c["ferplus"]["nonfaces"]["Training"] == {"nonfaces": 1, "no_image_name": 1,
                                                    "nf_top_vote": 0}
    assert data_counts(ds)["ferplus"] is None
    with pytest.raises(ValueError, match="line up"):
        data_counts(ds, _votes(5, [], majority[:5]))


def test_data_effects_command_measures_the_leaderboards_models(fer_csv, tmp_path):
    """End to end on a tiny csv: the leaderboard's selected run is measured (the shipped model
    is a spec like it), the non-face pair is "not run yet" with its command, and the report section
    renders the file."""
    import json
    import shutil

    from fer_study.assets import DEFAULT_KERAS_MODEL
    from fer_study.cli import main
    from fer_study.data_effects_report import NONFACE_PAIR, data_effects_section, model_specs

    path = fer_csv[0]
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    shutil.copy(DEFAULT_KERAS_MODEL, run / "best.keras")
    board = {"selected": "r1", "selected_tta": "flip", "selected_runs": ["r1"],
             "deployable": {"name": "r1", "tta": "flip", "runs": ["r1"]},
             "runs": {"r1": {"run_dir": str(run)}}, "created_utc": "2026-01-01T00:00:00Z"}
    (tmp_path / "best.json").write_text(json.dumps(board))
    assert [s["role"] for s in model_specs(board)] == ["selected", "shipped"]  # same pick once
    out = tmp_path / "de.json"
    # one model load keeps the test short: the shipped model is the same file as r1
    assert main(["data-effects", "--data", str(path), "--leaderboard",
                 str(tmp_path / "best.json"), "--no-shipped", "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [(m["role"], m["tta"]) for m in res["models"]] == [("selected", "flip")]
    assert res["models"][0]["effects"]["all"]["n"] == 7  # 21 rows, 7 of them PrivateTest
    assert res["counts"]["leaked"]["PrivateTest"]["also_in_training"] == 0
    assert res["nonface_drop"]["status"] == "not measured: needs --ferplus"
    assert res["command"].startswith("python -m fer_study data-effects --data ")
    assert res["command"].endswith("--no-shipped --output " + str(out))
    md = "\n".join(data_effects_section(res, selected_now="r2"))
    assert "| r1 (selected) | flip |" in md and "it now selects `r2`" in md
    assert f"`{NONFACE_PAIR[1]}` drops them" in md and "make runs NAMES=" in md
