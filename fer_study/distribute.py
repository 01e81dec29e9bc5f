"""Data-parallel training through the backends' own machinery.

The training loop stays Keras' ``model.fit``; a distribution only decides where the variables
live and how each batch is split:

* TensorFlow (the default backend): ``tf.distribute.MirroredStrategy`` over the GPUs of one
  machine (or the CPU split into virtual devices, ``devices="cpu:N"``, to test the path without
  GPUs), and ``tf.distribute.MultiWorkerMirroredStrategy`` over several machines described by
  each worker's ``TF_CONFIG``.
* JAX: ``keras.distribution.DataParallel`` over a one-axis device mesh. (Keras' distribution
  API has no TensorFlow or torch implementation yet; torch trains on one device.)

Batch size and learning rate. ``batch_size`` is the *global* batch: each step splits it evenly
across the replicas and the learning rate is unchanged, so N devices optimise what one device
does with the same batch (batch-norm statistics are synchronised across replicas, see
``sync_batch_norm``); more devices make a step faster, not different. ``scale_by_replicas``
(off by default) applies the linear scaling rule instead (Goyal et al., 2017): every replica
takes ``batch_size`` images, so the global batch is ``batch_size x replicas`` and the learning
rate ``lr x replicas`` (warm-up epochs are advised); that changes the optimisation, so such a
run resumes only on the same number of replicas.

Checkpoints are ordinary ``.keras`` files: a run resumes on any device set. Under
MultiWorkerMirroredStrategy every worker runs the same command; the chief (task ``chief``, or
``worker`` 0 in a cluster without one) writes the run folder, the others keep their copy in
``<run_dir>/<task><index>`` so that workers sharing a file system never write the same file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import keras
import numpy as np

from fer_study.errors import ConfigError
from fer_study.run_options import DISTRIBUTIONS

TF_KINDS = ("mirrored", "multi_worker")
_STRATEGIES: dict[tuple, Any] = {}  # one strategy per device set and process (see _strategy)


class DistributionError(ConfigError):
    """A distribution or device request this machine or backend cannot honour."""


@dataclass
class Placement:
    """Where a run trains: the resolved strategy, its replicas and the batch and LR it uses."""

    kind: str  # none | mirrored | multi_worker | data_parallel
    devices: list[str] = field(default_factory=list)
    replicas: int = 1
    workers: int = 1
    batch_size: int = 64  # global batch per step
    lr_factor: float = 1.0
    strategy: Any = None  # tf.distribute.Strategy or keras.distribution.Distribution
    sync_batch_norm: bool = False

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build, load, compile and fit inside this scope (variables placed per replica)."""
        if self.strategy is None:
            yield
            return
        fixes = _multi_worker_fit_fixes() if self.kind == "multi_worker" \
            else contextlib.nullcontext()
        with fixes, self.strategy.scope():
            yield

    def scaled(self, cfg: Any) -> Any:
        """`cfg` with the global batch and learning rate this placement trains with."""
        if self.batch_size == cfg.batch_size and self.lr_factor == 1.0:
            return cfg
        return replace(cfg, batch_size=self.batch_size, lr=cfg.lr * self.lr_factor)

    def callbacks(self) -> list[keras.callbacks.Callback]:
        return [_SyncBatchNorm()] if self.sync_batch_norm else []

    def batches(self, data: keras.utils.PyDataset, training: bool) -> keras.utils.PyDataset:
        """The batches as fit should see them: training as an EpochStream; on JAX, batches
        that divide by the replicas (each is sharded along its first axis)."""
        if self.kind == "data_parallel" and self.replicas > 1:
            data = EvenBatches(data, self.replicas, pad=not training)
        return EpochStream(data) if training else data

    def describe(self) -> dict:
        """What a run's state and metrics record about where it trained."""
        return {"kind": self.kind, "strategy": type(self.strategy).__name__
                if self.strategy is not None else None, "devices": self.devices,
                "replicas": self.replicas, "workers": self.workers,
                "global_batch": self.batch_size,
                "per_replica_batch": self.batch_size / self.replicas,
                "lr_factor": self.lr_factor, "sync_batch_norm": self.sync_batch_norm}


def plan(cfg: Any) -> Placement:
    """The placement of run config `cfg` (fields distribution, devices, batch_size,
    scale_by_replicas, sync_batch_norm). Configures TensorFlow's virtual CPUs for
    ``devices="cpu:N"``, so call it before TensorFlow runs anything."""
    kind = resolve_kind(cfg.distribution, cfg.devices)
    if kind == "none":
        return Placement("none", batch_size=cfg.batch_size)
    backend = keras.backend.backend()
    if kind in TF_KINDS and backend != "tensorflow":
        raise DistributionError(f"distribution {kind!r} is TensorFlow's tf.distribute; the "
                                f"Keras backend is {backend!r} (use 'data_parallel' on JAX)")
    if kind == "data_parallel" and backend != "jax":
        raise DistributionError(f"distribution 'data_parallel' (keras.distribution) runs on the "
                                f"JAX backend; the Keras backend is {backend!r} (on TensorFlow "
                                f"use 'mirrored' or 'multi_worker')")
    if kind == "multi_worker":
        if cfg.devices not in (None, "all"):
            raise DistributionError("multi_worker uses every GPU of each worker (or its CPU); "
                                    "restrict them with CUDA_VISIBLE_DEVICES, not devices")
        strategy = _strategy(kind, ())
        devices = list(strategy.extended.worker_devices)
        workers = strategy.num_replicas_in_sync // max(1, len(devices))
    elif kind == "mirrored":
        devices = tf_devices(cfg.devices)
        strategy, workers = _strategy(kind, tuple(devices)), 1
    else:
        devs = jax_devices(cfg.devices)
        devices = [str(d) for d in devs]
        strategy = keras.distribution.DataParallel(devices=devs)
        workers = 1
    replicas = strategy.num_replicas_in_sync if kind in TF_KINDS else len(devices)
    scale = bool(cfg.scale_by_replicas)
    return Placement(kind, devices, replicas, workers,
                     batch_size=cfg.batch_size * replicas if scale else cfg.batch_size,
                     lr_factor=float(replicas) if scale else 1.0, strategy=strategy,
                     sync_batch_norm=bool(cfg.sync_batch_norm) and kind in TF_KINDS
                     and replicas > 1)


def resolve_kind(distribution: str, devices: str | int | None) -> str:
    """'auto' -> the backend's data-parallel machinery (multi_worker when TF_CONFIG names
    several tasks); 'none' with devices given is refused rather than silently ignored."""
    if distribution not in DISTRIBUTIONS:
        raise DistributionError(f"distribution must be one of {DISTRIBUTIONS}, got "
                                f"{distribution!r}")
    if distribution == "none":
        if devices not in (None, ""):
            raise DistributionError(f"devices={devices!r} needs a distribution: use "
                                    f"distribution='auto' (the CLI's --devices does)")
        return "none"
    if distribution != "auto":
        return distribution
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return "multi_worker" if cluster_size() > 1 else "mirrored"
    if backend == "jax":
        return "data_parallel"
    raise DistributionError(f"no data-parallel training for the {backend!r} backend: Keras' "
                            f"distribution API covers JAX, tf.distribute covers TensorFlow")


def check_resume(placement: Placement, state: dict, scale_by_replicas: bool) -> None:
    """A run trained with scale_by_replicas resumes only on as many replicas: the global
    batch and learning rate depend on it."""
    before = (state.get("distribution") or {}).get("replicas", 1)
    if scale_by_replicas and state.get("epoch") and before != placement.replicas:
        raise DistributionError(
            f"this run trained on {before} replica(s) with scale_by_replicas (global batch and "
            f"learning rate x replicas); resuming on {placement.replicas} would change both. "
            f"Resume on {before} replica(s), or start a new run")


# --------------------------------------------------------------------------- devices

def _split_spec(devices: str | int | None) -> tuple[str, Any]:
    """('all', None) | ('count', n) | ('cpu', n) | ('list', [names])."""
    text = "all" if devices in (None, "", "all") else str(devices).strip()
    if text == "all":
        return "all", None
    if text.isdigit():
        n = int(text)
        if n < 1:
            raise DistributionError("devices must be at least 1")
        return "count", n
    head, _, tail = text.lower().partition(":")
    if head == "cpu" and tail.isdigit() and "," not in text:
        return "cpu", int(tail)
    return "list", [d.strip() for d in text.split(",") if d.strip()]


def tf_devices(devices: str | int | None) -> list[str]:
    """TensorFlow device names for a devices spec: 'all' (every GPU, else the CPU), 'N' (the
    first N GPUs), 'cpu:N' (the CPU as N virtual devices) or names ('GPU:0,GPU:2')."""
    import tensorflow as tf

    how, arg = _split_spec(devices)
    if how == "cpu":
        split_cpu(arg)
        return [d.name for d in tf.config.list_logical_devices("CPU")[:arg]]
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if how == "all":
        return gpus or [tf.config.list_logical_devices("CPU")[0].name]
    if how == "count":
        if arg > len(gpus):
            raise DistributionError(f"devices={arg}: this machine has {len(gpus)} GPU(s) "
                                    f"visible to TensorFlow; use devices='cpu:{arg}' to test "
                                    f"on CPU")
        return gpus[:arg]
    known = {d.name.lower(): d.name for d in tf.config.list_logical_devices()}
    out = []
    for name in arg:
        full = name if name.startswith("/") else f"/job:localhost/replica:0/task:0/device:{name}"
        if full.lower() not in known:
            raise DistributionError(f"device {name!r} not found; devices here: "
                                    f"{', '.join(sorted(known.values()))}")
        out.append(known[full.lower()])
    return out


def split_cpu(n: int) -> None:
    """Present the CPU to TensorFlow as `n` logical devices (tests the multi-replica path
    on a machine without GPUs; it does not make training faster)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) >= n:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError as e:  # the runtime already started with fewer CPU devices
        have = len(tf.config.list_logical_devices("CPU"))
        if have >= n:
            return
        raise DistributionError(f"devices='cpu:{n}': TensorFlow already started with {have} "
                                f"CPU device(s); split the CPU before anything else runs "
                                f"(a fresh process)") from e


def jax_devices(devices: str | int | None) -> list:
    """JAX devices for a devices spec (see tf_devices). 'cpu:N' needs
    XLA_FLAGS=--xla_force_host_platform_device_count=N set before the process starts."""
    import jax

    how, arg = _split_spec(devices)
    if how == "cpu":
        cpus = jax.devices("cpu")
        if len(cpus) < arg:
            raise DistributionError(
                f"devices='cpu:{arg}': JAX sees {len(cpus)} CPU device(s); start Python with "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={arg}")
        return cpus[:arg]
    every = jax.devices()
    if how == "all":
        return every
    if how == "count":
        if arg > len(every):
            raise DistributionError(f"devices={arg}: JAX sees {len(every)} device(s)")
        return every[:arg]
    by_name = {f"{d.platform}:{d.id}": d for d in every}
    missing = [n for n in arg if n.lower() not in by_name]
    if missing:
        raise DistributionError(f"device(s) {missing} not found; JAX devices: "
                                f"{', '.join(by_name)}")
    return [by_name[n.lower()] for n in arg]


def _strategy(kind: str, devices: tuple[str, ...]) -> Any:
    """One tf.distribute strategy per device set and process: a second MirroredStrategy on the
    same devices would reuse the first one's collective keys and fail its all-reduces."""
    key = (kind, devices)
    if key not in _STRATEGIES:
        import tensorflow as tf

        _STRATEGIES[key] = tf.distribute.MirroredStrategy(list(devices)) \
            if kind == "mirrored" else tf.distribute.MultiWorkerMirroredStrategy()
    return _STRATEGIES[key]


# --------------------------------------------------------------------------- multi-worker

def _tf_config() -> dict:
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DistributionError(f"TF_CONFIG is not JSON: {e}") from e


def cluster_size() -> int:
    """Tasks in TF_CONFIG's cluster (chief + workers); 1 without TF_CONFIG."""
    cluster = _tf_config().get("cluster", {})
    return sum(len(cluster.get(k, [])) for k in ("chief", "worker")) or 1


def worker_task() -> tuple[str, int, bool]:
    """(task type, index, is chief) of this process in TF_CONFIG (('chief', 0, True) alone)."""
    cfg = _tf_config()
    task = cfg.get("task", {})
    kind, index = task.get("type", "chief"), int(task.get("index", 0))
    has_chief = bool(cfg.get("cluster", {}).get("chief"))
    chief = kind == "chief" or (kind == "worker" and index == 0 and not has_chief)
    return kind, index, chief


def is_chief(distribution: str) -> bool:
    """Whether this process writes a run's shared outputs (always, but on the non-chief
    workers of a multi-worker run)."""
    if distribution not in ("multi_worker", "auto") or cluster_size() <= 1:
        return True
    return worker_task()[2]


def worker_run_dir(run_dir: str, distribution: str) -> str:
    """The run folder this process writes: the run's own for the chief (and every
    non-multi-worker run), a subfolder for the other workers of a multi-worker run."""
    if is_chief(distribution):
        return run_dir
    kind, index, _ = worker_task()
    return os.path.join(run_dir, f"{kind}{index}")


@contextlib.contextmanager
def _multi_worker_fit_fixes() -> Iterator[None]:
    """Keras 3's TensorFlow trainer cannot ``fit`` under MultiWorkerMirroredStrategy
    (tensorflow/tensorflow#72388): its symbolic build averages a per-replica input batch with
    ``strategy.reduce`` and its step reduces scalar logs along axis 0, and the collective
    reduce rejects both. Inside this block the two functions do what they mean: build from the
    first local replica's batch, and average the logs over all replicas (axis None). Both
    changes apply only to multi-worker strategies and are undone on exit; a Keras without
    these internals is left as it is."""
    try:
        from keras.src import tree
        from keras.src.backend.tensorflow import trainer as tf_trainer

        trainer_cls = tf_trainer.TensorFlowTrainer
        original_reduce = tf_trainer.reduce_per_replica
        original_build = trainer_cls._maybe_symbolic_build
        multi_worker = tf_trainer._collective_all_reduce_multi_worker
    except (ImportError, AttributeError):
        yield
        return
    import tensorflow as tf

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or not multi_worker(strategy):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tree.map_structure(
                lambda v: strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues) else v, batch)
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    tf_trainer.reduce_per_replica = reduce_per_replica
    trainer_cls._maybe_symbolic_build = maybe_symbolic_build
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original_reduce
        trainer_cls._maybe_symbolic_build = original_build


# --------------------------------------------------------------------------- keras pieces

class _SyncBatchNorm(keras.callbacks.Callback):
    """Batch-norm statistics over the global batch (all-reduced across replicas), as one
    device computes them; set before the first step traces the training function."""

    def on_train_begin(self, logs=None) -> None:
        for layer in _layers(self.model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True


def _layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):  # nested backbones (transfer models)
            yield from _layers(layer)


class EvenBatches(keras.utils.PyDataset):
    """Batches whose size divides by `replicas`. Training batches lose their last rows (at
    most replicas - 1 images an epoch, different ones each epoch as the order reshuffles);
    evaluation batches are padded with zero-weight copies, which no metric counts."""

    def __init__(self, inner: keras.utils.PyDataset, replicas: int, pad: bool) -> None:
        super().__init__()
        self.inner, self.replicas, self.pad = inner, replicas, pad

    def __len__(self) -> int:
        n = len(self.inner)
        if self.pad or n == 0:
            return n
        last = len(self.inner.images) - (n - 1) * self.inner.batch_size  # a FerBatches
        return n - 1 if last < self.replicas else n

    def __getitem__(self, i: int):
        x, y, w = self.inner[i]
        extra = len(x) % self.replicas
        if not extra:
            return x, y, w
        if not self.pad:
            keep = len(x) - extra
            return x[:keep], y[:keep], w[:keep]
        k = self.replicas - extra
        idx = np.arange(k) % len(x)
        return (np.concatenate([x, x[idx]]), np.concatenate([y, y[idx]]),
                np.concatenate([w, np.zeros(k, dtype=w.dtype)]))

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def on_epoch_end(self) -> None:
        self.inner.on_epoch_end()


class EpochStream(keras.utils.PyDataset):
    """A training PyDataset (with ``set_epoch``) as one endless stream: batch k is batch
    k mod n of epoch start + k // n. Keras reads batches ahead (a distributed iterator
    prefetches the next epoch before ``on_epoch_end`` reshuffles) and, with ``shuffle``,
    reorders batches with Python's global RNG, whose state differs after a resume; taking the
    epoch from the index makes the stream the same on any device set and after a resume.
    Fit it with ``steps_per_epoch=stream.steps`` and ``shuffle=False``."""

    def __init__(self, inner: keras.utils.PyDataset) -> None:
        super().__init__()
        self.inner, self.steps, self.start, self._epoch = inner, len(inner), 0, None

    @property
    def num_batches(self) -> None:
        return None  # endless: fit's steps_per_epoch cuts it into epochs

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next fit starts at (a resumed run's)."""
        self.start, self._epoch = epoch, None

    def __getitem__(self, k: int):
        epoch = self.start + k // self.steps
        if epoch != self._epoch:
            self.inner.set_epoch(epoch)
            self._epoch = epoch
        return self.inner[k % self.steps]


def describe_plan(placement: Placement) -> str:
    """One line for the training log."""
    if placement.kind == "none":
        return "one device"
    per = placement.batch_size / placement.replicas
    per_text = f"{per:g}" if per == math.floor(per) else f"~{per:.1f}"
    return (f"{placement.kind} over {placement.replicas} replica(s) on {placement.workers} "
            f"worker(s): global batch {placement.batch_size} ({per_text} per replica), "
            f"lr x{placement.lr_factor:g}")

