"""MLflow tracking against real stores: a local SQLite store read back with MlflowClient,
the study's per-stage runs, and a real `mlflow server` on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from fer_study import train as train_mod
from fer_study.cli import main
from fer_study.errors import ConfigError
from fer_study.profiles import Profile
from fer_study.study import run_study
from fer_study.train import RunConfig, train

mlflow = pytest.importorskip("mlflow", reason="the 'tracking' extra (make test installs it)")
from mlflow import MlflowClient  # noqa: E402

SIZES = {"Training": 70, "PublicTest": 35, "PrivateTest": 35}
FAST = {"model": "mini_xception", "data": "synthetic", "synthetic_sizes": SIZES, "epochs": 3,
        "batch_size": 32, "tta": "none", "patience": 0, "verbose": 0,
        "model_kwargs": {"l2": 1e-4}}


def _client(store: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")


def _runs(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def test_training_run_is_logged_resumed_and_read_back(tmp_path, monkeypatch):
    store, run_dir = tmp_path / "mlruns", tmp_path / "run"
    cfg = RunConfig(**FAST, run_dir=str(run_dir), mlflow=str(store), mlflow_experiment="unit")
    original = train_mod._RunState.on_epoch_end

    def crash_after_two(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(train_mod._RunState, "on_epoch_end", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    client = _client(store)
    (killed,) = _runs(client, "unit")
    assert killed.info.status == "KILLED"
    monkeypatch.setattr(train_mod._RunState, "on_epoch_end", original)
    result = train(cfg)

    (run,) = _runs(client, "unit")  # the resumed run continued the same MLflow run
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    params = run.data.params
    assert params["model"] == "mini_xception" and params["epochs"] == "3"
    assert params["model_kwargs.l2"] == "0.0001" and "augment.rotation" in params
    # every epoch once, the one finished just before the interruption included
    history = [row.split(",") for row in (run_dir / "history.csv").read_text().splitlines()]
    col = history[0].index("val_accuracy")
    logged = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert sorted(m.step for m in logged) == [1, 2, 3]
    assert [m.value for m in sorted(logged, key=lambda m: m.step)] == pytest.approx(
        [float(r[col]) for r in history[1:]])
    splits = result.metrics["splits"]
    assert run.data.metrics["PrivateTest/accuracy"] == pytest.approx(
        splits["PrivateTest"]["none"]["accuracy"])
    assert run.data.metrics["PublicTest/macro_f1"] == pytest.approx(
        splits["PublicTest"]["none"]["macro_f1"])
    assert run.data.metrics["best_epoch"] == result.metrics["best_epoch"]
    tags = run.data.tags
    assert tags["data.synthetic"] == "true" and "NOT FER2013" in tags["data.dataset"]
    assert tags["data.split_sizes.Training"] == "70" and tags["distribution.kind"] == "none"
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "history.csv", "metrics.json", "model"} <= names
    model = client.download_artifacts(run.info.run_id, "model/best.keras", str(tmp_path))
    assert Path(model).read_bytes() == (run_dir / "best.keras").read_bytes()
    train(cfg)  # finished: nothing is trained or logged again
    assert len(_runs(client, "unit")) == 1


def test_cli_flags_reach_the_config_and_missing_mlflow_is_one_clear_line(
        tmp_path, monkeypatch, capsys):
    seen = []

    def fake_train(cfg, overwrite=False):
        seen.append(cfg)
        raise ConfigError("stop before training")

    monkeypatch.setattr(train_mod, "train", fake_train)
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--devices", "all",
                 "--scale-by-replicas", "--mlflow", "--mlflow-experiment", "e"]) == 2
    cfg = seen[-1]
    assert (cfg.distribution, cfg.devices, cfg.scale_by_replicas) == ("auto", "all", True)
    assert (cfg.mlflow, cfg.mlflow_experiment) == ("mlruns", "e")
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--mlflow"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: MLflow tracking needs MLflow: pip install 'fer-study[tracking]'"
    assert len(seen) == 1  # refused before any training started


def test_mlflow_is_imported_only_when_asked_for():
    code = ("import sys, fer_study.cli, fer_study.train, fer_study.study\n"
            "from fer_study.cli import build_parser\nbuild_parser()\n"
            "print('mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- the study

def _notebook(path: Path, *cells: str) -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    params = new_code_cell('reports_dir = "reports"\nprofile = "demo"\nepochs = 2')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *[new_code_cell(c) for c in cells]]
    nbformat.write(nb, str(path))


def _stage(name: str, run_dir: Path | None) -> str:
    """A stage that writes a results JSON (and, with run_dir, a run folder it names)."""
    lines = ["import json, pathlib", f"name = {name!r}",
             "res = {'status': 'ok', 'summary': {'PublicTest acc': 0.5, 'params': 10}}"]
    if run_dir:
        lines += [f"run = pathlib.Path({str(run_dir)!r})", "run.mkdir(parents=True)",
                  "(run / 'history.csv').write_text('epoch,phase,loss,val_accuracy\\n'"
                  " + ''.join(f'{e},train,{1 / e},{0.1 * e}\\n' for e in range(1, epochs + 1)))",
                  "(run / 'best.keras').write_bytes(b'weights')", "res['run_dir'] = str(run)"]
    lines += ["p = pathlib.Path(reports_dir) / 'results' / f'{name}.json'",
              "p.parent.mkdir(parents=True, exist_ok=True)", "p.write_text(json.dumps(res))"]
    return "\n".join(lines)


def test_study_logs_each_stage_once_as_a_run_of_one_experiment(tmp_path):
    nbs, store = tmp_path / "nbs", tmp_path / "mlruns"
    nbs.mkdir()
    _notebook(nbs / "01_train.ipynb", _stage("01_train", tmp_path / "runs" / "m"))
    _notebook(nbs / "02_later.ipynb", "raise ValueError('broken')")
    profile = Profile(name="unit", notebooks={"01_train": {"epochs": 2}, "02_later": {}})
    kw = {"reports_dir": str(tmp_path / "reports"), "notebooks_dir": nbs, "progress": False,
          "mlflow": str(store)}
    assert run_study(profile, **kw) == 1
    client = _client(store)
    runs = {r.info.run_name: r for r in _runs(client, "fer-study-unit")}
    assert set(runs) == {"01_train", "02_later"}
    ok, failed = runs["01_train"], runs["02_later"]
    assert ok.info.status == "FINISHED" and ok.data.tags["fer_study.status"] == "ok"
    assert ok.data.params["epochs"] == "2" and ok.data.tags["fer_study.profile"] == "unit"
    assert ok.data.tags["data.kind"] == "synthetic"
    assert ok.data.metrics["PublicTest acc"] == 0.5 and ok.data.metrics["stage_seconds"] > 0
    steps = client.get_metric_history(ok.info.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in steps] == [(1, pytest.approx(0.1)),
                                                   (2, pytest.approx(0.2))]
    names = {a.path for a in client.list_artifacts(ok.info.run_id)}
    assert {"01_train.json", "01_train.html", "model"} <= names
    assert failed.info.status == "FAILED" and failed.data.tags["fer_study.status"] == "failed"

    # fixed: the finished stage is skipped and not logged again; the fixed one is
    _notebook(nbs / "02_later.ipynb", _stage("02_later", None))
    assert run_study(profile, **kw) == 0
    runs = _runs(client, "fer-study-unit")
    assert sorted((r.info.run_name, r.info.status) for r in runs) == [
        ("01_train", "FINISHED"), ("02_later", "FAILED"), ("02_later", "FINISHED")]


# --------------------------------------------------------------------------- a real server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 (SQLite backend, proxied artifacts)."""
    port = _free_port()
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe) if exe.exists() else "mlflow", "server", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
           "--artifacts-destination", str(tmp_path / "server-artifacts")]
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow server did not start:\n"
                            + (tmp_path / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_a_finished_run_logged_to_a_real_mlflow_server(tmp_path, mlflow_server):
    """A run trained without --mlflow, then given a tracking server: the finished run is
    logged from its folder (epochs from history.csv), and only once."""
    plain = RunConfig(**{**FAST, "epochs": 2}, run_dir=str(tmp_path / "run"))
    result = train(plain)
    cfg = RunConfig(**{**plain.to_json(), "mlflow": mlflow_server,
                       "mlflow_experiment": "served"})
    assert train(cfg).metrics == result.metrics  # where it is logged is not what it is
    train(cfg)
    client = MlflowClient(tracking_uri=mlflow_server)
    (run,) = _runs(client, "served")
    assert run.info.status == "FINISHED" and run.data.params["epochs"] == "2"
    assert run.data.metrics["PublicTest/accuracy"] == pytest.approx(
        result.metrics["splits"]["PublicTest"]["none"]["accuracy"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
    model = client.download_artifacts(run.info.run_id, "model/best.keras", str(tmp_path))
    assert Path(model).read_bytes() == (tmp_path / "run" / "best.keras").read_bytes()
    metrics = json.loads(Path(client.download_artifacts(
        run.info.run_id, "metrics.json", str(tmp_path))).read_text())
    assert metrics["data"]["synthetic"] is True
