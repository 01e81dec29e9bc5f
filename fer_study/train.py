"""Training runs: one config object per run, a run folder with everything needed to trust
and resume it.

A run folder holds ``config.json``, ``history.csv`` (one row per epoch), ``best.keras`` (best
on the selection split), ``last.keras`` + ``state.json`` (to resume after an interruption) and
``metrics.json`` (metrics per split and data provenance). Selection is on PublicTest only;
PrivateTest is evaluated once, with the selected checkpoint.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np

from fer_study.augment import AugmentConfig, FerBatches, class_weights
from fer_study.data import Dataset, drop_training_nonfaces, load_dataset, train_val_test
from fer_study.distill import teacher_summary
from fer_study.distribute import (
    EpochStream,
    check_resume,
    describe_plan,
    plan,
    worker_run_dir,
)
from fer_study.errors import ConfigError, DataError
from fer_study.evaluate import apply_temperature, fit_temperature, metrics_from_probs, predict_probs
from fer_study.models import (
    build_model,
    count_params,
    get_spec,
    load_model,
    set_trainable,
)
from fer_study.precision import dtype_policy, resolve_precision
from fer_study.provenance import stamp, write_json
from fer_study.run_config import (  # noqa: F401  re-exported: the config lives beside train()
    EXECUTION_FIELDS,
    RunConfig,
    reproduce_command,
    saved_config,
)
from fer_study.tracking import log_finished_run, open_run

TRAIN_EVAL_SAMPLE = 5000  # train accuracy is measured on a fixed sample to keep runs cheap
# A run made before the precision option existed trained in float32 and recorded no
# precision (its config.json, state.json and metrics.json lack the field).
PRECISION_BEFORE_OPTION = "float32"


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    model: keras.Model | None = None


@dataclass
class _Phase:
    name: str
    start: int
    end: int
    trainable: str | None  # None for scratch models
    lr: float


def _phases(cfg: RunConfig, transfer: bool) -> list[_Phase]:
    if not transfer:
        return [_Phase("train", 0, cfg.epochs, None, cfg.lr)]
    if cfg.fine_tune == "none":
        return [_Phase("frozen", 0, cfg.epochs, "frozen", cfg.lr)]
    if cfg.fine_tune not in ("top_n", "all"):
        raise ValueError(f"fine_tune must be 'top_n', 'all' or 'none', got {cfg.fine_tune!r}")
    k = min(cfg.frozen_epochs, cfg.epochs)
    phases = [_Phase("frozen", 0, k, "frozen", cfg.lr)] if k else []
    if cfg.epochs > k:
        phases.append(_Phase("fine_tune", k, cfg.epochs, cfg.fine_tune,
                             cfg.lr * cfg.fine_tune_lr_factor))
    return phases


def _lr_at(cfg: RunConfig, phase: _Phase, epoch: int, plateau_lr: float | None) -> float:
    if cfg.schedule == "plateau":
        return plateau_lr if plateau_lr is not None else phase.lr
    t = epoch - phase.start
    if t < cfg.warmup_epochs:
        return phase.lr * (t + 1) / (cfg.warmup_epochs + 1)
    if cfg.schedule == "constant":
        return phase.lr
    if cfg.schedule == "cosine":
        span = max(1, phase.end - phase.start - cfg.warmup_epochs)
        return phase.lr * 0.5 * (1 + math.cos(math.pi * (t - cfg.warmup_epochs) / span))
    raise ValueError(f"schedule must be cosine, plateau or constant, got {cfg.schedule!r}")


def _optimizer(cfg: RunConfig, lr: float) -> keras.optimizers.Optimizer:
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True,
                                    weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be adam, adamw or sgd, got {cfg.optimizer!r}")


def _compile(model: keras.Model, cfg: RunConfig, lr: float) -> None:
    model.compile(optimizer=_optimizer(cfg, lr),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])


class _RunState(keras.callbacks.Callback):
    """Per-epoch bookkeeping that makes a run resumable: LR schedule, history rows, best and
    last checkpoints, early stopping and plateau counters, all persisted every epoch."""

    def __init__(self, run_dir: Path, cfg: RunConfig, phase: _Phase, state: dict) -> None:
        super().__init__()
        self.run_dir, self.cfg, self.phase, self.state = run_dir, cfg, phase, state
        self.t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        lr = _lr_at(self.cfg, self.phase, epoch, self.state.get("plateau_lr"))
        self.model.optimizer.learning_rate.assign(lr)
        self.state["lr"] = lr
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        s = self.state
        seconds = time.perf_counter() - self.t0
        row = {"epoch": epoch + 1, "phase": self.phase.name, "lr": s["lr"],
               "seconds": round(seconds, 2),
               **{k: float(v) for k, v in logs.items() if k != "learning_rate"}}
        hist = self.run_dir / "history.csv"
        new = not hist.exists()
        with open(hist, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)
        val_acc = float(logs.get("val_accuracy", -1.0))
        if val_acc > s["best_val_accuracy"]:
            s.update(best_val_accuracy=val_acc, best_epoch=epoch + 1, wait=0)
            self.model.save(self.run_dir / "best.keras")
        else:
            s["wait"] += 1
        if self.cfg.schedule == "plateau":
            val_loss = float(logs.get("val_loss", math.inf))
            if val_loss < s.get("plateau_best", math.inf) - 1e-4:
                s.update(plateau_best=val_loss, plateau_wait=0)
            else:
                s["plateau_wait"] = s.get("plateau_wait", 0) + 1
                if s["plateau_wait"] >= 3:
                    s.update(plateau_lr=max(s["lr"] * 0.5, 1e-6), plateau_wait=0)
        s["epoch"] = epoch + 1
        s["train_seconds"] = s.get("train_seconds", 0.0) + seconds
        self.model.save(self.run_dir / "last.keras")
        write_json(self.run_dir / "state.json", s)  # after last.keras: state never runs ahead
        if self.cfg.patience and s["wait"] >= self.cfg.patience:
            s["stopped_early"] = True
            self.model.stop_training = True


def _truncate_history(path: Path, epochs_done: int) -> None:
    """Drop history rows past the last persisted epoch (an interrupted epoch is re-run)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if int(r["epoch"]) <= epochs_done]
    if len(keep) != len(rows):
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(keep)


def _subsample(ds: Dataset, n: int | None, seed: int) -> Dataset:
    if n is None or n >= len(ds):
        return ds
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(ds))[:n])
    return ds.select(idx)


def _weights_arg(cfg: RunConfig, spec) -> dict:
    if not spec.is_transfer:
        return {}
    return {} if cfg.weights == "default" else {"weights": cfg.weights}


def train(cfg: RunConfig, dataset: Dataset | None = None, overwrite: bool = False) -> RunResult:
    """Train (or resume, or return the finished result of) the run described by `cfg`.

    The config and the data are checked before the run folder is touched, so a bad input
    leaves no folder whose config would block the corrected command."""
    cfg.validate()
    run_dir = Path(worker_run_dir(cfg.run_dir, cfg.distribution))
    cfg = cfg if run_dir == Path(cfg.run_dir) else replace(cfg, run_dir=str(run_dir))
    cfg_file = run_dir / "config.json"
    state_file = run_dir / "state.json"
    if cfg_file.exists() and not overwrite:
        _refuse_other_config(cfg, cfg_file)
        state = _read_state(state_file)
        if state.get("completed") and (run_dir / "metrics.json").exists():
            metrics = json.loads((run_dir / "metrics.json").read_text())
            if log_finished_run(cfg, state, metrics, run_dir):  # --mlflow on a finished run
                write_json(state_file, state)
            return RunResult(run_dir, metrics)
    state = _read_state(None if overwrite else state_file)

    placement = plan(cfg)  # before TensorFlow runs anything (virtual CPU devices)
    check_resume(placement, state, cfg.scale_by_replicas)
    state["distribution"] = placement.describe()
    fit_cfg = placement.scaled(cfg)  # the global batch and lr this placement trains with
    keras.utils.set_random_seed(cfg.seed)
    spec = get_spec(cfg.model)
    ds, train_ds, val_ds, test_ds = _prepare_data(cfg, dataset)
    aug = AugmentConfig(**cfg.augment) if cfg.augment else None
    cw = class_weights(train_ds.labels, cfg.class_weight_power) if cfg.class_weight_power \
        else None
    batches = FerBatches(train_ds.images, train_ds.labels, fit_cfg.batch_size, cfg.input_size,
                         augment=aug, weights=cw, soft=train_ds.soft_labels,
                         soft_mask=train_ds.soft_mask, soft_weight=cfg.soft_label_weight,
                         teacher=train_ds.teacher_probs, teacher_weight=cfg.teacher_weight,
                         shuffle=True, seed=cfg.seed)
    val_batches = FerBatches(val_ds.images, val_ds.labels, 256, cfg.input_size)

    # Inputs are valid: from here on the run folder is written.
    run_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for name in ("history.csv", "state.json", "last.keras", "best.keras", "metrics.json"):
            (run_dir / name).unlink(missing_ok=True)
    write_json(cfg_file, cfg.to_json())
    precision = resolve_precision(cfg.precision)
    state["precision"] = precision
    if cfg.verbose and placement.kind != "none":
        print(f"[{cfg.model}] {describe_plan(placement)}")
    tracker = open_run(cfg, state)
    with tracker.active(), dtype_policy(precision), placement.scope():
        _fit(fit_cfg, spec, run_dir, state, placement.batches(batches, training=True),
             placement.batches(val_batches, training=False), len(train_ds), len(val_ds),
             callbacks=placement.callbacks() + tracker.callbacks())
    best = load_model(run_dir / "best.keras", compile=True)
    metrics = _final_metrics(best, cfg, ds, train_ds, val_ds, test_ds, state,
                             state.pop("resumed_from"))
    write_json(run_dir / "metrics.json", metrics)
    state["completed"] = True
    write_json(state_file, state)
    tracker.finish(metrics, run_dir)
    return RunResult(run_dir, metrics, best)


def _refuse_other_config(cfg: RunConfig, cfg_file: Path) -> None:
    """A run folder belongs to one config. Fields added to RunConfig after a run started
    read as their defaults, so a run resumes across package versions that only add options."""
    old = saved_config(cfg_file)
    changed = sorted(k for k in set(old) | set(cfg.to_json())
                     if old.get(k) != cfg.to_json().get(k) and k not in EXECUTION_FIELDS)
    if changed:
        raise ConfigError(f"{cfg_file.parent} holds a run with a different config (differs in "
                          f"{changed}); use another run_dir or overwrite=True (--overwrite)")


def _read_state(state_file: Path | None) -> dict:
    """A run's saved progress; a fresh state for a new (or overwritten: None) run."""
    if state_file is not None and state_file.exists():
        return json.loads(state_file.read_text())
    return {"epoch": 0, "best_val_accuracy": -1.0, "best_epoch": 0, "wait": 0,
            "completed": False}


def _prepare_data(cfg: RunConfig, dataset: Dataset | None
                  ) -> tuple[Dataset, Dataset, Dataset, Dataset | None]:
    """(all data, fit, select, report) splits of the run, teacher attached and the fit split
    subsampled; raises DataError for data (or a teacher file) that cannot be used."""
    if cfg.teacher and not Path(cfg.teacher).is_file():
        raise DataError(f"teacher file not found: {cfg.teacher} (make it with "
                        f"`python -m fer_study teacher RUN_DIR ... --output {cfg.teacher}`)")
    ds = dataset if dataset is not None else load_dataset(
        cfg.data, ferplus=cfg.ferplus, synthetic_sizes=cfg.synthetic_sizes, seed=cfg.seed)
    if cfg.drop_nonfaces:
        ds = drop_training_nonfaces(ds, cfg.ferplus)
    train_ds, val_ds, test_ds = train_val_test(ds, seed=cfg.seed)
    if cfg.teacher:
        from fer_study.distill import attach_teacher

        train_ds = attach_teacher(train_ds, cfg.teacher, cfg.teacher_temperature)
    return ds, _subsample(train_ds, cfg.max_train_samples, cfg.seed), val_ds, test_ds


def _fit(cfg: RunConfig, spec, run_dir: Path, state: dict, batches: EpochStream,
         val_batches: keras.utils.PyDataset, n_train: int, n_val: int,
         callbacks: list = ()) -> None:
    """All training phases, resuming inside whichever one the run stopped in."""
    model = None
    state["resumed_from"] = state["epoch"] if state["epoch"] else None
    _truncate_history(run_dir / "history.csv", state["epoch"])
    for phase in _phases(cfg, spec.is_transfer):
        if state["epoch"] >= phase.end or state.get("stopped_early") and phase.name == "train":
            continue
        if model is None and state["epoch"] > 0 and (run_dir / "last.keras").exists():
            model = load_model(run_dir / "last.keras", compile=True)  # weights + optimizer
        if model is None:
            model = build_model(cfg.model, input_size=cfg.input_size,
                                **_weights_arg(cfg, spec), **cfg.model_kwargs)
        if state["epoch"] <= phase.start:  # entering this phase (not resuming inside it)
            if phase.trainable:
                set_trainable(model, phase.trainable, cfg.fine_tune_layers)
            _compile(model, cfg, phase.lr)
            state.update(wait=0, stopped_early=False, plateau_lr=None)
        batches.set_epoch(state["epoch"])
        if cfg.verbose:
            print(f"[{cfg.model}] phase {phase.name}: epochs {state['epoch'] + 1}-{phase.end} "
                  f"of {cfg.epochs}, {n_train} train / {n_val} selection images, "
                  f"{state['precision']}")
        # batches is an EpochStream (fer_study.distribute): its order is its own, per epoch
        model.fit(batches, validation_data=val_batches, initial_epoch=state["epoch"],
                  epochs=phase.end, steps_per_epoch=batches.steps, shuffle=False,
                  callbacks=[_RunState(run_dir, cfg, phase, state), *callbacks],
                  verbose=cfg.verbose)


def _final_metrics(model: keras.Model, cfg: RunConfig, ds: Dataset, train_ds: Dataset,
                   val_ds: Dataset, test_ds: Dataset | None, state: dict,
                   resumed_from: int | None) -> dict:
    spec = get_spec(cfg.model)
    sample = _subsample(train_ds, TRAIN_EVAL_SAMPLE, cfg.seed + 1)
    splits = {"Training": sample, val_ds.usage[0]: val_ds}
    if test_ds is not None:
        splits[test_ds.usage[0]] = test_ds
    results: dict = {}
    val_probs = {}
    for name, part in splits.items():
        results[name] = {}
        for tta in dict.fromkeys(("none", cfg.tta)):
            probs = predict_probs(model, part.images, tta=tta)
            results[name][tta] = metrics_from_probs(probs, part.labels)
            if part is val_ds:
                val_probs[tta] = probs
            elif part is test_ds:
                results[name][tta]["_probs"] = probs
    # Temperature scaling: fitted on the selection split, applied to the report split.
    for tta, probs in val_probs.items():
        t = fit_temperature(probs, val_ds.labels)
        for name in splits:
            r = results[name][tta]
            r["temperature"] = t
            if "_probs" in r:
                scaled = apply_temperature(r.pop("_probs"), t)
                r["ece_after_temperature"] = metrics_from_probs(scaled, test_ds.labels)["ece"]
    history = []
    hist_file = Path(cfg.run_dir) / "history.csv"
    if hist_file.exists():
        with open(hist_file) as f:
            history = list(csv.DictReader(f))
    model_file = Path(cfg.run_dir) / "best.keras"
    return {
        "model": cfg.model, "kind": spec.kind, "description": spec.description,
        "pretrained_weights": (spec.pretrained if cfg.weights == "default" else cfg.weights)
        if spec.is_transfer else None,
        "config": cfg.to_json(),
        "data": {**ds.provenance(), "train_images_used": len(train_ds),
                 "training_metrics_sample": len(sample)},
        "protocol": {"fit": "Training", "select": val_ds.usage[0],
                     "report": test_ds.usage[0] if test_ds is not None else None,
                     "selection_metric": "accuracy (best epoch checkpoint)"},
        "precision": state.get("precision", PRECISION_BEFORE_OPTION),
        "distribution": state.get("distribution"),
        "teacher": teacher_summary(cfg.teacher, cfg.teacher_weight, cfg.teacher_temperature)
        if cfg.teacher else None,
        "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
        "stopped_early": bool(state.get("stopped_early")), "resumed_from_epoch": resumed_from,
        "train_seconds": round(state.get("train_seconds", 0.0), 1),
        "params": count_params(model), "model_bytes": model_file.stat().st_size,
        "splits": results, "epochs_history": len(history),
        **stamp(),
    }
