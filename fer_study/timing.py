"""The one latency timer: median and 90th percentile of repeated calls, in milliseconds.

Latency tables (notebook 04's Keras models, notebook 06's TFLite exports, notebook 07's
pipeline stages) all come from :func:`summarise_ms`, so their numbers mean the same thing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "keras_latency",
    "stage_latency_table",
    "summarise_ms",
    "time_calls",
]


def summarise_ms(seconds: Sequence[float]) -> dict:
    """Median and 90th-percentile milliseconds of `seconds` (one entry per call)."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    if ms.size == 0:
        raise ValueError("no timings to summarise")
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "calls": int(ms.size)}


def time_calls(call: Callable[[], Any], calls: int = 50, warmup: int = 5) -> dict:
    """Time `calls` calls of `call` after `warmup` untimed ones (graph tracing, caches)."""
    if calls < 1:
        raise ValueError(f"calls must be >= 1, got {calls}")
    for _ in range(max(0, warmup)):
        call()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return {**summarise_ms(times), "warmup": warmup}


def keras_latency(model: Any, calls: int = 50, warmup: int = 5, seed: int = 0) -> dict:
    """Batch-1 CPU latency of a Keras model through a compiled forward pass (tf.function),
    on a random face-sized input. model.predict is avoided on purpose: it adds per-call
    dataset and callback overhead that a deployed model does not pay."""
    import keras

    s = int(model.input_shape[1])
    x = np.random.default_rng(seed).uniform(0, 255, size=(1, s, s, 1)).astype("float32")
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
        xt = tf.constant(x)

        def call() -> None:
            fn(xt).numpy()
    else:  # other backends: eager call, still without predict()'s overhead
        def call() -> None:
            np.asarray(model(x, training=False))
    out = time_calls(call, calls=calls, warmup=max(1, warmup))
    return {**out, "warmup": warmup, "input": [1, s, s, 1],
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def stage_latency_table(timings: Mapping[str, Sequence[float]], name: str = "pipeline"
                        ) -> list[dict]:
    """One row per pipeline stage (seconds per frame, e.g. Pipeline.timings): median and p90
    milliseconds and the number of frames timed."""
    rows = []
    for stage, values in timings.items():
        if len(values) == 0:
            continue
        s = summarise_ms(values)
        rows.append({"model": name, "stage": stage, "median_ms": s["median_ms"],
                     "p90_ms": s["p90_ms"], "frames": s["calls"]})
    return rows
