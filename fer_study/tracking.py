"""Optional experiment tracking with MLflow (``pip install 'fer-study[tracking]'``).

``--mlflow [TARGET]`` logs a training run to an MLflow store: its config (params), the
metrics of every epoch (step = epoch), the final metrics of every split and test-time
augmentation, the data's provenance (tags and ``metrics.json``) and the run folder's files
(``best.keras`` under ``model/``, ``config.json``, ``history.csv``, ``metrics.json``). The
study logs each stage as a run of one experiment (:func:`log_stage`).

TARGET is a tracking URI (``http://host:5000``, ``sqlite:///...``, ``postgresql://...``,
``databricks``) or a local folder, by default ``mlruns/``: a SQLite database
``mlruns/mlflow.db`` with the artifacts beside it in ``mlruns/artifacts/`` (MLflow 3 keeps
plain-file stores only in maintenance mode). Browse it with
``mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db``.

Without MLflow installed nothing here imports it; asking for tracking then fails with one
line naming the extra.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import keras

from fer_study.distribute import is_chief
from fer_study.run_options import DEFAULT_EXPERIMENT, DEFAULT_STORE, require_mlflow

_FINAL_KEYS = ("accuracy", "top2_accuracy", "macro_f1", "weighted_f1", "ece",
               "ece_after_temperature", "temperature", "n")


def store_uri(target: str | None) -> str:
    """Tracking URI of TARGET: a URI as given, a folder as its SQLite store (created)."""
    target = target or DEFAULT_STORE
    if "://" in target or target == "databricks":
        return target
    folder = Path(target).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def _artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store go next to its database; servers choose their own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "artifacts").as_uri()
    return None


def client_for(target: str | None) -> Any:
    """An MlflowClient on TARGET (see store_uri)."""
    require_mlflow()
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=store_uri(target))


def experiment_id(client: Any, name: str) -> str:
    """The id of experiment `name`, created (or restored from the bin) if needed."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name, artifact_location=_artifact_root(
            client.tracking_uri))
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    """{'augment': {'rotation': 5}} -> {'augment.rotation': 5}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def metric_name(name: str) -> str:
    """MLflow accepts letters, digits and _ - . space : / in metric names."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", name).strip() or "_"


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def _log(client: Any, run_id: str, metrics: Mapping[str, float] | None = None,
         params: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
         step: int = 0) -> None:
    """One or more log_batch calls within MLflow's per-request limits."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    ms = [Metric(metric_name(k), float(v), now, step) for k, v in (metrics or {}).items()
          if isinstance(v, int | float) and not isinstance(v, bool) and v == v]
    ps = [Param(k[:250], _text(v)[:6000]) for k, v in (params or {}).items()]
    ts = [RunTag(k[:250], _text(v)[:5000]) for k, v in (tags or {}).items()]
    while ms or ps or ts:
        client.log_batch(run_id, metrics=ms[:1000], params=ps[:100], tags=ts[:100])
        ms, ps, ts = ms[1000:], ps[100:], ts[100:]


def final_metrics(splits: Mapping[str, Mapping[str, Mapping]]) -> dict[str, float]:
    """metrics.json's splits as flat names: 'PublicTest/accuracy' (no TTA),
    'PublicTest/flip/accuracy' (with flip TTA)."""
    out = {}
    for split, by_tta in splits.items():
        for tta, m in by_tta.items():
            head = split if tta == "none" else f"{split}/{tta}"
            out.update({f"{head}/{k}": m[k] for k in _FINAL_KEYS if m.get(k) is not None})
    return out


def data_tags(provenance: Mapping) -> dict[str, Any]:
    """The data's identity as tags (class counts stay in metrics.json)."""
    keep = {k: v for k, v in provenance.items() if k != "class_counts"}
    return flatten(keep, "data.")


# --------------------------------------------------------------------------- training runs

class RunTracker:
    """The MLflow run of one training run; a resumed run continues the same MLflow run."""

    def __init__(self, client: Any, run_id: str, state: dict) -> None:
        self.client, self.run_id, self.state = client, run_id, state

    @classmethod
    def open(cls, cfg: Any, state: dict) -> RunTracker:
        """Start (or, for a resumed run, reopen) the MLflow run of run config `cfg`."""
        client = client_for(cfg.mlflow)
        previous = state.get("mlflow") or {}
        run_id = None
        if previous.get("uri") == client.tracking_uri and previous.get("run_id"):
            with contextlib.suppress(Exception):  # deleted meanwhile: start a new one
                run_id = client.get_run(previous["run_id"]).info.run_id
                client.update_run(run_id, status="RUNNING")
        if run_id is None:
            exp = experiment_id(client, cfg.mlflow_experiment or DEFAULT_EXPERIMENT)
            run_id = client.create_run(exp, run_name=Path(cfg.run_dir).name,
                                       tags={"fer_study.run_dir": str(cfg.run_dir),
                                             "fer_study.model": cfg.model}).info.run_id
        logged = client.get_run(run_id).data.params
        # Params are write-once in MLflow: a resumed run keeps those of its first start
        # (only execution settings such as devices may differ; the run's state has them).
        params = {k: v for k, v in flatten(cfg.to_json()).items() if k not in logged}
        _log(client, run_id, params=params)
        # epochs already in history.csv but not in MLflow (an interruption between the run's
        # own bookkeeping and this logging, or a run started without --mlflow)
        logged = {m.step for m in client.get_metric_history(run_id, "loss")}
        _log_history(client, run_id, Path(cfg.run_dir) / "history.csv", skip=logged,
                     upto=state.get("epoch", 0))
        state["mlflow"] = {"uri": client.tracking_uri, "run_id": run_id}
        return cls(client, run_id, state)

    def callbacks(self) -> list[keras.callbacks.Callback]:
        return [_EpochMetrics(self)]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Marks the MLflow run KILLED (interrupted) or FAILED when training raises."""
        try:
            yield
        except KeyboardInterrupt:
            self.client.set_terminated(self.run_id, status="KILLED")
            raise
        except Exception:
            self.client.set_terminated(self.run_id, status="FAILED")
            raise

    def finish(self, metrics: Mapping, run_dir: Path) -> None:
        """Final metrics, provenance tags and the run folder's files; status FINISHED."""
        summary = {"best_epoch": metrics.get("best_epoch"), "epochs_run":
                   metrics.get("epochs_run"), "train_seconds": metrics.get("train_seconds"),
                   "params_total": (metrics.get("params") or {}).get("total"),
                   "model_bytes": metrics.get("model_bytes")}
        tags = {**data_tags(metrics.get("data", {})), "fer_study.kind": metrics.get("kind"),
                "fer_study.precision": metrics.get("precision"),
                **flatten(metrics.get("distribution") or {}, "distribution.")}
        git = metrics.get("git") or {}
        if git.get("commit"):
            tags["mlflow.source.git.commit"] = git["commit"]
        _log(self.client, self.run_id, metrics={**final_metrics(metrics.get("splits", {})),
                                                 **summary},
             tags={k: v for k, v in tags.items() if v is not None},
             step=int(metrics.get("epochs_run") or 0))
        for name in ("config.json", "history.csv", "metrics.json"):
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name))
        if (run_dir / "best.keras").is_file():
            self.client.log_artifact(self.run_id, str(run_dir / "best.keras"), "model")
        self.client.set_terminated(self.run_id, status="FINISHED")


class _EpochMetrics(keras.callbacks.Callback):
    """Logs each epoch's losses, accuracies, learning rate and seconds (step = epoch)."""

    def __init__(self, tracker: RunTracker) -> None:
        super().__init__()
        self.tracker = tracker
        self.t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        # the names of history.csv's columns (what _log_history logs from it)
        values = {k: v for k, v in (logs or {}).items() if k != "learning_rate"}
        values["lr"] = self.tracker.state.get("lr")
        values["seconds"] = time.perf_counter() - self.t0
        _log(self.tracker.client, self.tracker.run_id, metrics=values, step=epoch + 1)


def open_run(cfg: Any, state: dict) -> RunTracker | _NoTracking:
    """The tracker of a training run: MLflow when cfg.mlflow is set (on the chief only, when
    several workers train it), else one that does nothing (and imports nothing)."""
    if getattr(cfg, "mlflow", None) and is_chief(cfg.distribution):
        return RunTracker.open(cfg, state)
    return _NoTracking()


def log_finished_run(cfg: Any, state: dict, metrics: Mapping, run_dir: Path) -> bool:
    """`--mlflow` on a run that finished without it (or into another store): log it now.
    Returns whether `state` changed (it records the MLflow run)."""
    if not getattr(cfg, "mlflow", None) or not is_chief(cfg.distribution):
        return False
    if (state.get("mlflow") or {}).get("uri") == store_uri(cfg.mlflow):
        return False  # logged when it finished
    RunTracker.open(cfg, state).finish(metrics, run_dir)
    return True


class _NoTracking:
    def callbacks(self) -> list:
        return []

    def active(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def finish(self, metrics: Mapping, run_dir: Path) -> None:
        return None


# --------------------------------------------------------------------------- study stages

def log_stage(target: str | None, experiment: str, name: str, status: str,
              fingerprint: str, params: Mapping, tags: Mapping | None = None,
              seconds: float | None = None, results: Path | None = None,
              files: tuple[Path, ...] = (), base: Path | None = None) -> str | None:
    """Log one study stage as an MLflow run of `experiment`: its parameters, status,
    time, the numbers of its results JSON's summary, the per-epoch history and model of the
    training run it names (run_dir, relative to `base`), and `files` as artifacts. A stage
    already logged with the same fingerprint and status is not logged twice; returns the new
    run's id, or None when it was already there."""
    client = client_for(target)
    exp = experiment_id(client, experiment)
    found = client.search_runs([exp], filter_string=f"tags.`fer_study.stage` = '{name}' and "
                               f"tags.`fer_study.fingerprint` = '{fingerprint}' and "
                               f"tags.`fer_study.status` = '{status}'", max_results=1)
    if found:
        return None
    run_id = client.create_run(exp, run_name=name).info.run_id
    result = _read_json(results) if results else {}
    _log(client, run_id, params=flatten(params),
         tags={"fer_study.stage": name, "fer_study.fingerprint": fingerprint,
               "fer_study.status": status, "fer_study.result_status":
               result.get("status", "missing"), **(tags or {})},
         metrics={"stage_seconds": seconds,
                  **{k: v for k, v in (result.get("summary") or {}).items()
                     if isinstance(v, int | float)}})
    run_dir = result.get("run_dir")
    if run_dir:
        folder = (base or Path.cwd()) / run_dir
        _log_history(client, run_id, folder / "history.csv")
        if (folder / "best.keras").is_file():
            client.log_artifact(run_id, str(folder / "best.keras"), "model")
    for f in (results, *files):
        if f is not None and Path(f).is_file():
            client.log_artifact(run_id, str(f))
    client.set_terminated(run_id, status="FINISHED" if status == "ok" else "FAILED")
    return run_id


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _log_history(client: Any, run_id: str, history: Path, skip: set[int] = frozenset(),
                 upto: int | None = None) -> None:
    """history.csv's rows as per-epoch metrics (step = epoch), but epochs in `skip` and
    after `upto`."""
    if not history.is_file():
        return
    with open(history, newline="") as f:
        for row in csv.DictReader(f):
            epoch = int(row["epoch"])
            if epoch in skip or upto is not None and epoch > upto:
                continue
            values = {}
            for k, v in row.items():
                if k in ("epoch", "phase"):
                    continue
                with contextlib.suppress(TypeError, ValueError):
                    values[k] = float(v)
            _log(client, run_id, metrics=values, step=epoch)

