"""Training precision: float32 or Keras `mixed_bfloat16`, chosen per machine.

bf16 only pays where the hardware multiplies bf16 natively and the backend uses it. Measured
with `python -m fer_study benchmark-training` (reports/results/benchmark_training.json), the
real input pipeline included: on a 2-core AMD EPYC with AVX512-BF16 (no AMX), TF
`mixed_bfloat16` trains vgg_style width 32 1.24x and width 16 1.34x faster than float32
(mini-Xception, mostly depthwise convolutions: 1.02x); the issue that asked for this measured
1.4x on an Intel Xeon with AMX. So "auto" picks bf16 on CPUs with AVX512-BF16 or AMX and on
GPUs, float32 elsewhere. The committed run configs name their precision explicitly, so a
result does not depend on the machine that reproduces it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

PRECISIONS = ("auto", "float32", "mixed_bfloat16")


def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where it is unavailable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def has_accelerator() -> bool:
    """Whether the Keras backend sees a GPU (or TPU)."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
        if backend == "torch":
            import torch

            return bool(torch.cuda.is_available())
        if backend == "jax":
            import jax

            return any(d.platform != "cpu" for d in jax.devices())
    except Exception:  # a broken driver means: train on the CPU
        return False
    return False


def resolve_precision(requested: str = "auto") -> str:
    """The Keras dtype policy a run uses: `requested`, or for "auto" the measured-fastest."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return requested
    if has_accelerator() or cpu_flags() & {"amx_bf16", "avx512_bf16"}:
        return "mixed_bfloat16"
    return "float32"


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Set Keras' global dtype policy inside the block, restoring the previous one after
    (models built inside keep their per-layer policies when saved and reloaded)."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
