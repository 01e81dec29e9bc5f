"""Data-parallel training: 2 replicas train like 1 device with the same global batch.

The 2-device runs need a fresh interpreter (TensorFlow's virtual CPU devices and JAX's host
device count are fixed when the runtime starts), so this file also runs as a script: the
tests start it in a subprocess, which trains and writes what it measured as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_study import distribute
from fer_study.distribute import DistributionError, EvenBatches, Placement
from fer_study.run_options import distribution_settings

SIZES = {"Training": 64, "PublicTest": 32, "PrivateTest": 32}
# SGD: Adam's first steps are ~lr * sign(gradient), which turns float round-off in near-zero
# gradients into lr-sized differences; SGD keeps a tolerance meaningful.
# float32 pinned: the runs are compared at float32 round-off, which "auto" (bf16 on CPUs with
# AVX512-BF16 or AMX) would not give.
BASE = {"model": "mini_xception", "data": "synthetic", "synthetic_sizes": SIZES, "epochs": 2,
        "batch_size": 32, "optimizer": "sgd", "lr": 0.002, "schedule": "constant",
        "model_kwargs": {"l2": 1e-4}, "tta": "none", "patience": 0, "verbose": 0,
        "precision": "float32"}


# --------------------------------------------------------------------------- child process

def _child(out_dir: str, backend: str) -> None:
    """Train one device vs two replicas (on TensorFlow interrupted after epoch 1 and resumed;
    JAX compiles slowly, so it checks the equivalence only) and report how far apart the
    final weights are, relative to how far training moved them."""
    import keras

    from fer_study import train as train_mod
    from fer_study.models import build_model
    from fer_study.train import RunConfig, train

    out = Path(out_dir)
    kind = "mirrored" if backend == "tensorflow" else "data_parallel"
    if backend == "tensorflow":
        distribute.split_cpu(2)  # before the single-device run starts the runtime
    keras.utils.set_random_seed(0)
    w0 = build_model("mini_xception", l2=1e-4).get_weights()

    def weights(run: str) -> list[np.ndarray]:
        return keras.saving.load_model(out / run / "last.keras").get_weights()

    report: dict = {}
    train(RunConfig(**BASE, run_dir=str(out / "one")))
    two = RunConfig(**BASE, distribution=kind, devices="cpu:2", run_dir=str(out / "two"))
    original = train_mod._RunState.on_epoch_end

    def crash_after_first(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 0:
            raise KeyboardInterrupt("simulated interruption")

    if backend == "tensorflow":
        train_mod._RunState.on_epoch_end = crash_after_first
        try:
            train(two)
        except KeyboardInterrupt:
            report["interrupted_state"] = json.loads((out / "two" / "state.json").read_text())
        train_mod._RunState.on_epoch_end = original
    metrics = train(two).metrics
    report.update(resumed_from=metrics["resumed_from_epoch"], epochs=metrics["epochs_run"],
                  distribution=metrics["distribution"],
                  drift=_drift(weights("one"), weights("two"), w0))
    if backend == "tensorflow":  # the control: per-replica batch norm is measurably different
        train(RunConfig(**BASE, distribution=kind, devices="cpu:2", sync_batch_norm=False,
                        run_dir=str(out / "local_bn")))
        report["drift_local_bn"] = _drift(weights("one"), weights("local_bn"), w0)
    (out / "report.json").write_text(json.dumps(report))


def _drift(a: list[np.ndarray], b: list[np.ndarray], w0: list[np.ndarray]) -> float:
    """|a - b| / |a - w0| over all weights: 0 = identical, 1 = as far apart as training
    moved them."""
    num = sum(float(np.sum((x - y) ** 2)) for x, y in zip(a, b))
    den = sum(float(np.sum((x - z) ** 2)) for x, z in zip(a, w0))
    return (num / den) ** 0.5


def _run_child(tmp_path: Path, backend: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "FER_STUDY_CACHE": str(tmp_path / "cache")}
    if backend == "jax":
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, __file__, str(tmp_path), backend], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((tmp_path / "report.json").read_text())


# --------------------------------------------------------------------------- the tests

def test_two_virtual_cpus_train_like_one_device_and_resume(tmp_path):
    r = _run_child(tmp_path, "tensorflow")
    d = r["distribution"]
    assert (d["kind"], d["strategy"], d["replicas"]) == ("mirrored", "MirroredStrategy", 2)
    assert d["global_batch"] == 32 and d["per_replica_batch"] == 16 and d["lr_factor"] == 1
    # the interrupted 2-replica run stopped after epoch 1 and resumed from its checkpoint
    assert r["interrupted_state"]["epoch"] == 1 and not r["interrupted_state"]["completed"]
    assert (r["resumed_from"], r["epochs"]) == (1, 2)
    # same global batch, same result up to float round-off; local batch norm is the control
    # that shows the comparison can tell a different computation apart
    assert r["drift"] < 0.01, r
    assert r["drift_local_bn"] > 10 * r["drift"], r


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_workers_on_localhost_train_like_one_device(tmp_path):
    """MultiWorkerMirroredStrategy: two `train` processes, each told its place by TF_CONFIG
    (as on two machines), against a one-device run of the same config in this process."""
    import keras

    from fer_study.models import build_model
    from fer_study.train import RunConfig, train

    train(RunConfig(**BASE, run_dir=str(tmp_path / "one")))
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    args = [sys.executable, "-m", "fer_study", "train", "--distribution", "multi_worker",
            "--run-dir", str(tmp_path / "multi"),
            *[a for k, v in BASE.items() for a in ("--set", f"{k}={json.dumps(v)}")]]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "FER_STUDY_CACHE": str(tmp_path / "c"),
           "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH"))
                                         if p)}
    workers = [subprocess.Popen(args, env={**env, "TF_CONFIG": json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": i}})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    try:
        outs = [w.communicate(timeout=600)[0] for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:  # a worker whose peer died waits for it forever
                w.kill()
    assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-3000:] for o in outs)
    chief, other = tmp_path / "multi", tmp_path / "multi" / "worker1"
    d = json.loads((chief / "metrics.json").read_text())["distribution"]
    assert (d["kind"], d["replicas"], d["workers"], d["global_batch"]) == (
        "multi_worker", 2, 2, 32)
    # both workers trained the same model; the other one kept its copy out of the chief's way
    assert _history(chief) == _history(other)
    keras.utils.set_random_seed(0)
    w0 = build_model("mini_xception", l2=1e-4).get_weights()

    def weights(run: Path) -> list[np.ndarray]:
        return keras.saving.load_model(run / "last.keras").get_weights()

    assert _drift(weights(tmp_path / "one"), weights(chief), w0) < 0.01


def _history(run: Path) -> list[dict]:
    """history.csv without its timings."""
    import csv

    with open(run / "history.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def test_jax_data_parallel_over_two_host_devices(tmp_path):
    pytest.importorskip("jax", reason="the JAX backend is an optional extra ('jax')")
    r = _run_child(tmp_path, "jax")
    d = r["distribution"]
    assert (d["kind"], d["strategy"], d["replicas"]) == ("data_parallel", "DataParallel", 2)
    assert r["epochs"] == 2 and r["drift"] < 0.01, r


# --------------------------------------------------------------------------- in-process

def test_resolve_kind_and_cli_settings():
    assert distribute.resolve_kind("none", None) == "none"
    assert distribute.resolve_kind("auto", "all") == "mirrored"  # TF backend, no TF_CONFIG
    assert distribute.resolve_kind("data_parallel", None) == "data_parallel"
    with pytest.raises(DistributionError, match="needs a distribution"):
        distribute.resolve_kind("none", "2")
    with pytest.raises(DistributionError, match="must be one of"):
        distribute.resolve_kind("horovod", None)

    class Args:
        devices, distribution, scale_by_replicas = "all", None, False

    assert distribution_settings(Args) == {"devices": "all", "distribution": "auto"}
    Args.devices = None
    assert distribution_settings(Args) == {}


def test_data_parallel_is_refused_on_the_tensorflow_backend():
    from fer_study.train import RunConfig

    with pytest.raises(DistributionError, match="JAX backend"):
        distribute.plan(RunConfig(distribution="data_parallel"))
    with pytest.raises(DistributionError, match="only 0 GPU|has 0 GPU"):
        distribute.plan(RunConfig(distribution="mirrored", devices="4"))


def test_linear_scaling_is_opt_in_and_pins_the_replica_count():
    from fer_study.train import RunConfig

    cfg = RunConfig(batch_size=64, lr=1e-3)
    same = Placement("mirrored", replicas=4, batch_size=64)
    assert same.scaled(cfg) is cfg  # default: the global batch is split, lr unchanged
    scaled = Placement("mirrored", replicas=4, batch_size=256, lr_factor=4.0).scaled(cfg)
    assert (scaled.batch_size, scaled.lr) == (256, 4e-3) and cfg.batch_size == 64
    state = {"epoch": 3, "distribution": {"replicas": 4}}
    distribute.check_resume(Placement("mirrored", replicas=4), state, True)
    distribute.check_resume(Placement("mirrored", replicas=2), state, False)
    with pytest.raises(DistributionError, match="on 4 replica"):
        distribute.check_resume(Placement("mirrored", replicas=2), state, True)


def test_non_chief_workers_write_their_own_folder(monkeypatch):
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 1}}))
    assert distribute.cluster_size() == 2
    assert distribute.worker_run_dir("runs/x", "multi_worker") == os.path.join("runs/x",
                                                                               "worker1")
    assert distribute.resolve_kind("auto", None) == "multi_worker"
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 0}}))
    assert distribute.worker_run_dir("runs/x", "multi_worker") == "runs/x"  # the chief
    monkeypatch.delenv("TF_CONFIG")
    assert distribute.worker_run_dir("runs/x", "multi_worker") == "runs/x"


def test_even_batches_trim_training_and_pad_evaluation():
    from fer_study.augment import FerBatches

    images = np.random.default_rng(0).integers(0, 255, (21, 48, 48)).astype(np.uint8)
    labels = np.arange(21) % 7
    train = EvenBatches(FerBatches(images, labels, batch_size=8), replicas=2, pad=False)
    sizes = [len(train[i][0]) for i in range(len(train))]
    assert sizes == [8, 8, 4]  # 5 left over: 4 kept, 1 dropped
    assert len(EvenBatches(FerBatches(images[:17], labels[:17], 8), 2, pad=False)) == 2
    evaluate = EvenBatches(FerBatches(images, labels, batch_size=8), replicas=2, pad=True)
    x, y, w = evaluate[2]
    assert len(x) == 6 and w.tolist() == [1, 1, 1, 1, 1, 0]  # the copy weighs nothing
    assert sum(float(evaluate[i][2].sum()) for i in range(len(evaluate))) == 21


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _child(sys.argv[1], sys.argv[2])
