"""The study runner: plans and profiles, an end-to-end smoke run of every notebook, the
incremental re-run, and a failing cell that names its notebook and cell."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from conftest import parse_md_table
from nbformat.v4 import new_code_cell, new_notebook

from fer_study.cli import main
from fer_study.errors import ConfigError
from fer_study.fingerprint import code_sha256
from fer_study.plan import notebook_parameters, plan_study
from fer_study.profiles import PROFILES, TRANSFER_BACKBONES, Profile, get_profile
from fer_study.results import SYNTHETIC_BANNER
from fer_study.study import run_study

CONVENTION = {"profile", "data", "ferplus", "synthetic_sizes", "runs_dir", "reports_dir", "seed"}


# --------------------------------------------------------------------------- plans

def test_demo_plan_covers_every_notebook_and_backbone():
    names = [s.name for s in plan_study("demo")]
    assert names == ["01_data_exploration", "02_baseline_cnn",
                     *[f"03_transfer_learning__{b}" for b in TRANSFER_BACKBONES],
                     "04_model_comparison", "05_gradcam", "06_robustness_and_optimisation",
                     "07_realtime_deployment"]


@pytest.mark.parametrize("profile", ["demo", "smoke"])
def test_profiles_only_set_declared_parameters(profile):
    for s in plan_study(profile, reports_dir="r"):
        assert not s.dropped, (s.name, s.dropped)
        assert CONVENTION <= set(notebook_parameters(s.notebook)), s.name
        assert s.params["profile"] == profile and s.params["reports_dir"] == "r"


def test_every_notebook_opens_with_the_one_notebook_api():
    """Same common parameters (and defaults: the demo's, never the committed reports/) in
    every notebook, and one opening line that reads them."""
    stages = {s.notebook: s for s in plan_study("demo")}
    common = [{k: v for k, v in notebook_parameters(path).items() if k in CONVENTION}
              for path in stages]
    assert all(c == common[0] for c in common) and common[0]["reports_dir"] == \
        '"reports/demo"'
    for path in stages:
        nb = nbformat.read(str(path), as_version=4)
        code = [c.source for c in nb.cells if c.cell_type == "code"]
        opening = f'nb = open_notebook("{path.stem}", globals()'
        assert opening in code[1] and sum(opening in c for c in code) == 1, path.name
        assert not any("write_json" in c or "json.dumps" in c for c in code), path.name


def test_demo_never_writes_over_the_committed_real_study(tmp_path):
    """The committed reports/ are the real-data study; the demo and smoke profiles default to
    their own git-ignored folders, and an explicit --reports-dir still wins."""
    assert {s.params["reports_dir"] for s in plan_study("demo")} == {"reports/demo"}
    assert {s.params["reports_dir"] for s in plan_study("smoke")} == {"reports/smoke"}
    csv = tmp_path / "fer2013.csv"
    assert {s.params["reports_dir"] for s in plan_study("cpu", data=str(csv))} == {"reports"}
    assert {s.params["reports_dir"] for s in plan_study("demo", reports_dir="x")} == {"x"}
    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().split()
    assert "reports/demo/" in ignored and "reports/smoke/" in ignored


@pytest.mark.parametrize("profile", ["cpu", "full"])
def test_real_data_profiles_refuse_the_synthetic_set(profile):
    with pytest.raises(ConfigError, match="--data path/to/fer2013.csv"):
        plan_study(profile, data="synthetic")
    assert get_profile(profile).requires_real_data


def test_cpu_and_full_budgets():
    """Every backbone of a profile gets the same budget (images, epochs, input size,
    schedule), so their ranking means something; the scratch twin differs only in what
    random weights need (no frozen phase, a warm-up)."""
    cpu = PROFILES["cpu"]
    nb, sizes = "03_transfer_learning", cpu.repeat["03_transfer_learning"][1]
    assert set(sizes) == set(TRANSFER_BACKBONES)
    budget = {b: tuple(cpu.value(nb, k, b) for k in ("backbone_size", "max_train_samples",
                                                         "epochs", "batch_size"))
              for b in TRANSFER_BACKBONES}
    assert len(set(budget.values())) == 1 and budget["vgg16"] == (64, 6000, 4, 64)
    assert cpu.value(nb, "frozen_epochs", "efficientnet_lite0_scratch") == 0
    assert cpu.value(nb, "run_config", "efficientnet_lite0_scratch")["warmup_epochs"] == 1
    assert cpu.value("02_baseline_cnn", "lr") == 1e-3  # 1e-4 was still rising at 10 epochs
    full = PROFILES["full"]
    assert all(v["backbone_size"] == 224
               for v in full.repeat["03_transfer_learning"][1].values())
    assert full.notebooks["03_transfer_learning"]["fine_tune"] == "all"


def test_profiles_are_frozen_and_own_the_per_profile_caps():
    with pytest.raises(AttributeError):
        PROFILES["demo"].runs_dir = "elsewhere"
    # the image caps notebooks 05 and 06 used to type per profile now live in the profiles
    caps = {name: (p.value("05_gradcam", "max_images"),
                   p.value("06_robustness_and_optimisation", "max_images"),
                   p.value("06_robustness_and_optimisation", "representative_images"))
            for name, p in PROFILES.items()}
    assert caps == {"demo": (210, 140, 100), "cpu": (700, 1000, 300),
                    "full": (2100, None, 300), "smoke": (70, 70, 50)}
    by = {s.name: s.params for s in plan_study("demo")}
    assert by["05_gradcam"]["max_images"] == 210
    # an instance's own value wins over its notebook's
    assert PROFILES["cpu"].value("03_transfer_learning", "fine_tune_layers", "vgg16") == 8
    assert PROFILES["cpu"].value("03_transfer_learning", "fine_tune_layers", "resnet50") == 30
    with pytest.raises(ConfigError, match="sets no 'nope'"):
        PROFILES["demo"].value("05_gradcam", "nope")
    with pytest.raises(ConfigError, match="unknown profile"):
        get_profile("tiny")
    with pytest.raises(ConfigError, match="repeats notebooks it does not run"):
        Profile(name="x", notebooks={"01_a": {}}, repeat={"02_b": ("p", {"v": {}})})
    # a stage's parameters are copies: changing them leaves the profile as it was
    plan_study("demo")[0].params["synthetic_sizes"]["Training"] = 1
    assert PROFILES["demo"].params["synthetic_sizes"]["Training"] == 1000


def test_the_fingerprint_follows_the_package_code(tmp_path):
    """A change to the package's code re-runs the study's stages without --force."""
    pkg = tmp_path / "pkg"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "a.py").write_text("X = 1\n")
    before = code_sha256(pkg)
    (pkg / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"cache")
    assert code_sha256(pkg) == before  # caches do not count
    (pkg / "a.py").write_text("X = 2\n")
    assert code_sha256(pkg) != before


def test_overrides_apply_where_declared_and_only_selects(tmp_path):
    stages = plan_study("demo", overrides=["epochs=3", "vgg16:backbone_size=32",
                                           'synthetic_sizes={"Training": 70}'])
    by = {s.name: s.params for s in stages}
    assert "epochs" not in by["01_data_exploration"]
    assert by["02_baseline_cnn"]["epochs"] == 3
    assert all(by[f"03_transfer_learning__{b}"]["epochs"] == 3 for b in TRANSFER_BACKBONES)
    assert by["03_transfer_learning__vgg16"]["backbone_size"] == 32
    assert by["03_transfer_learning__resnet50"]["backbone_size"] == 48
    assert by["05_gradcam"]["synthetic_sizes"] == {"Training": 70}
    with pytest.raises(ConfigError, match="no parameter 'epoch'"):
        plan_study("demo", overrides=["epoch=3"])
    with pytest.raises(ConfigError, match="no such stage"):
        plan_study("demo", only=["99"])
    only = [s.name for s in plan_study("demo", only=["03", "04_model_comparison"])]
    assert only[0] == "03_transfer_learning__vggface_vgg16" and only[-1] == "04_model_comparison"
    assert [s.name for s in plan_study("demo", only=["resnet50"])] == \
        ["03_transfer_learning__resnet50"]


def test_dry_run_prints_the_plan(tmp_path, capsys):
    rc = main(["study", "--dry-run", "--reports-dir", str(tmp_path / "r"), "--only", "01", "02"])
    out = capsys.readouterr().out
    assert rc == 0 and "01_data_exploration" in out and "run (never run)" in out
    assert not (tmp_path / "r").exists()


def test_cli_refuses_cpu_profile_without_data(capsys):
    assert main(["study", "--profile", "cpu", "--dry-run"]) == 2
    assert "--data path/to/fer2013.csv" in capsys.readouterr().err


# --------------------------------------------------------------------------- smoke run

def _first_output_text(nb_path) -> str:
    nb = nbformat.read(str(nb_path), as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "data" in out:
                return out["data"].get("text/plain", "")
            if "text" in out:
                return out["text"]
    return ""


def test_smoke_study_runs_every_notebook_then_skips_them(tmp_path, capsys):
    reports, runs = tmp_path / "reports", tmp_path / "runs"
    missing = tmp_path / "no-such-weights.weights.h5"
    args = ["study", "--profile", "smoke", "--reports-dir", str(reports), "--runs-dir", str(runs),
            "-p", f'03_transfer_learning__mobilenetv2:weights="{missing}"']
    assert main(args) == 0, capsys.readouterr().err[-3000:]
    first_run = capsys.readouterr().out
    stages = [s.name for s in plan_study("smoke")]
    for name in stages:
        assert (reports / "results" / f"{name}.json").is_file(), name
        assert (reports / "notebooks" / f"{name}.ipynb").is_file(), name
        assert (reports / "notebooks" / f"{name}.html").is_file(), name
        # the synthetic banner is every executed notebook's first output
        assert SYNTHETIC_BANNER in _first_output_text(reports / "notebooks" / f"{name}.ipynb")
        assert f"{name}" in first_run
    figures = {p.name for p in (reports / "figures").glob("*.png")}
    for f in ("01_data_exploration_class_distribution.png", "01_data_exploration_samples.png",
              "01_data_exploration_mean_faces.png", "02_baseline_cnn_learning_curves.png",
              "03_transfer_learning__efficientnet_lite0_learning_curves.png",
              "04_model_comparison_accuracy.png", "04_model_comparison_confusions.png"):
        assert f in figures, f
    assert any(f.startswith("05_") for f in figures) and any(f.startswith("06_")
                                                             for f in figures)

    res = {n: json.loads((reports / "results" / f"{n}.json").read_text()) for n in stages}
    mnv2 = res["03_transfer_learning__mobilenetv2"]
    assert mnv2["status"] == "not run: weights unavailable"
    assert str(missing) in mnv2["reason"] and "--only 03_transfer_learning__mobilenetv2" in \
        mnv2["command"]
    assert not (runs / "mobilenetv2" / "best.keras").exists()  # nothing trained
    assert "NOT RUN: WEIGHTS UNAVAILABLE" in _all_text(
        reports / "notebooks" / "03_transfer_learning__mobilenetv2.ipynb")
    comp = res["04_model_comparison"]
    assert comp["best_model"] in ("baseline_cnn", "efficientnet_lite0")
    assert comp["best_run_dir"] == str(runs / comp["best_model"])
    sel = [r for r in comp["summary_table"] if r["status"] == "ok"]
    assert comp["best_selection_accuracy"] == max(r["PublicTest acc"] for r in sel)
    for r in res["01_data_exploration"], comp:
        assert r["data"]["synthetic"] is True and r["study"]["profile"] == "smoke"

    md = (reports / "REPORT.md").read_text()
    assert md.count(SYNTHETIC_BANNER) >= 2 and (reports / "REPORT.html").is_file()
    table = parse_md_table(md, "### Model comparison")
    assert [r["model"] for r in table] == ["baseline_cnn", "efficientnet_lite0", "mobilenetv2"]
    # the report's numbers are the comparison's and the training notebook's own results
    base = res["02_baseline_cnn"]["summary"]
    for got, want in zip(table, comp["summary_table"]):
        assert got["status"] == want["status"]
        for key in ("Training acc", "PublicTest acc", "PrivateTest acc", "PrivateTest macro-F1"):
            if want["status"] == "ok":
                assert float(got[key]) == pytest.approx(want[key], abs=5e-5), key
            else:
                assert got[key] == "—" and key not in want
    for key in ("Training acc", "PublicTest acc", "PrivateTest acc", "PrivateTest macro-F1"):
        assert float(table[0][key]) == pytest.approx(base[key], abs=5e-5)
    assert table[2]["status"] == "not run: weights unavailable"
    manifest = json.loads((reports / "results" / "study_manifest.json").read_text())
    assert all(manifest["stages"][n]["status"] == "ok" for n in stages)
    for name in stages:  # every stage wrote the one results format
        assert res[name]["format"] == 1 and res[name]["study"]["profile"] == "smoke", name

    # Second run: nothing changed, so every stage is skipped and no kernel starts.
    mtimes = {p: p.stat().st_mtime for p in (reports / "notebooks").glob("*.ipynb")}
    assert main(args) == 0
    second = capsys.readouterr().out
    assert second.count("skipped (unchanged") == len(stages), second
    assert "running" not in second
    assert {p: p.stat().st_mtime for p in mtimes} == mtimes


def _all_text(nb_path) -> str:
    nb = nbformat.read(str(nb_path), as_version=4)
    return "\n".join(json.dumps(o) for c in nb.cells for o in c.get("outputs", []))


# --------------------------------------------------------------------------- failures

def _notebook(path, *cells: str) -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    params = new_code_cell('reports_dir = "reports"\nprofile = "demo"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *[new_code_cell(c) for c in cells]]
    nbformat.write(nb, str(path))


WRITE_RESULT = ("import json, pathlib\n"
                "p = pathlib.Path(reports_dir) / 'results' / '{name}.json'\n"
                "p.parent.mkdir(parents=True, exist_ok=True)\n"
                "p.write_text(json.dumps({{'status': 'ok', 'study': {{'profile': profile}}}}))")


def test_failing_cell_fails_the_run_naming_notebook_and_cell(tmp_path, capsys):
    nbs, reports = tmp_path / "nbs", tmp_path / "reports"
    nbs.mkdir()
    _notebook(nbs / "01_ok.ipynb", WRITE_RESULT.format(name="01_ok"))
    _notebook(nbs / "02_broken.ipynb", "x = 1", "y = 2\nratio = x / 0\nz = 3",
              WRITE_RESULT.format(name="02_broken"))
    profile = Profile(name="unit", notebooks={"01_ok": {}, "02_broken": {}})
    kw = {"reports_dir": str(reports), "notebooks_dir": nbs, "progress": False}
    assert run_study(profile, **kw) == 1
    err = capsys.readouterr().err
    assert "stage 02_broken failed" in err and str(nbs / "02_broken.ipynb") in err
    assert "cell: index 2 of 02_broken.ipynb" in err
    assert "line 2 raised" in err and ">   2 | ratio = x / 0" in err
    assert "ZeroDivisionError: division by zero" in err
    partial = reports / "notebooks" / "02_broken.ipynb"
    assert partial.is_file() and "ZeroDivisionError" in _all_text(partial)
    manifest = json.loads((reports / "results" / "study_manifest.json").read_text())
    assert manifest["stages"]["01_ok"]["status"] == "ok"
    assert manifest["stages"]["02_broken"]["status"] == "failed"
    assert not (reports / "REPORT.md").exists()

    # Fixed: the finished stage is skipped, only the failed one runs again.
    _notebook(nbs / "02_broken.ipynb", "x = 1", WRITE_RESULT.format(name="02_broken"))
    assert run_study(profile, **kw) == 0
    out = capsys.readouterr().out
    assert "01_ok" in out and "skipped (unchanged" in out and "02_broken" in out
    assert (reports / "REPORT.md").is_file()


def test_a_notebook_that_writes_no_results_fails(tmp_path, capsys):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01_silent.ipynb", "x = 1")
    rc = run_study(Profile(name="unit", notebooks={"01_silent": {}}),
                   reports_dir=str(tmp_path / "r"),
                   notebooks_dir=nbs, progress=False)
    assert rc == 1
    assert "finished without writing" in capsys.readouterr().err
