"""Magnitude pruning in plain Keras 3, with fine-tuning.

``tensorflow-model-optimization`` does not support Keras 3, so this is the textbook method
written against Keras itself (any backend): for every conv / dense kernel, the fraction
`sparsity` of its weights with the smallest magnitude is set to zero (one shot, per kernel,
unstructured); biases, BatchNorm and, by default, the classifier head stay dense. The model is
then fine-tuned on training faces with the zeros re-imposed after every batch, so the weights
that survive adapt to the ones that were removed.

What it buys: a kernel with zeros is still a dense kernel. TFLite (XNNPACK) runs the same
multiply-adds on it, so latency does not change, and the flatbuffer keeps every float: the
file shrinks only once compressed (zeros compress), which is the honest size gain of
unstructured pruning (:mod:`fer_study.optimise` reports both sizes).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from fer_study.errors import ConfigError
from fer_study.model_input import as_model_input, model_input_size

__all__ = [
    "PRUNABLE",
    "PruneResult",
    "check_sparsity",
    "prunable_kernels",
    "magnitude_masks",
    "apply_masks",
    "kernel_sparsity",
    "KeepMasks",
    "prune_model",
]

PRUNABLE = ("kernel", "depthwise_kernel", "pointwise_kernel")  # variable names that get masks


@dataclass
class PruneResult:
    """A pruned (and fine-tuned) copy of a model and what was measured on the way."""

    model: Any
    sparsity: float  # requested, per kernel
    achieved: float  # zeros / weights over the pruned kernels, after fine-tuning
    model_sparsity: float  # zeros / all parameters of the model (BN, biases, head included)
    per_kernel: dict[str, float]  # variable path -> its fraction of zeros
    pruned_params: int  # weights in the pruned kernels
    total_params: int
    fine_tune_images: int
    epochs: int
    loss: list[float] = field(default_factory=list)  # training loss per epoch
    check_accuracy_before: float | None = None  # on `check`, pruned, before fine-tuning
    check_accuracy: float | None = None  # on `check`, after fine-tuning
    seconds: float = 0.0

    def summary(self) -> dict:
        """Everything but the model, JSON-ready."""
        return {k: v for k, v in self.__dict__.items() if k != "model"}


def check_sparsity(sparsity: Any) -> float:
    """`sparsity` as a float in [0, 1); ConfigError otherwise (1 would remove every weight)."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float, np.floating)) \
            or not 0.0 <= float(sparsity) < 1.0:
        raise ConfigError(f"sparsity must be a number in [0, 1) (the fraction of each kernel's "
                          f"weights set to zero), got {sparsity!r}")
    return float(sparsity)


def prunable_kernels(model: keras.Model, skip_output: bool = True) -> list[Any]:
    """The model's conv / dense kernels (each shared variable once), in order. With
    `skip_output` the classifier head (kernels with as many output units as the model has
    outputs) is left out: it is a tiny part of the weights and every class goes through it."""
    n_out = int(model.outputs[0].shape[-1])
    kernels, seen = [], set()
    for v in model.trainable_weights:
        if v.name not in PRUNABLE or len(v.shape) < 2 or id(v) in seen:
            continue
        seen.add(id(v))
        if skip_output and int(v.shape[-1]) == n_out:
            continue
        kernels.append(v)
    return kernels


def magnitude_masks(kernels: Sequence[Any], sparsity: float) -> list[np.ndarray]:
    """One 0/1 mask per kernel that zeroes its round(sparsity * size) smallest-|w| weights."""
    sparsity = check_sparsity(sparsity)
    masks = []
    for v in kernels:
        w = np.abs(keras.ops.convert_to_numpy(v.value)).ravel()
        k = int(round(sparsity * w.size))
        mask = np.ones(w.size, dtype=np.float32)
        mask[np.argsort(w, kind="stable")[:k]] = 0.0  # stable: ties broken by position
        masks.append(mask.reshape(tuple(v.shape)))
    return masks


def apply_masks(kernels: Sequence[Any], masks: Sequence[Any]) -> None:
    """Multiply every kernel by its mask, in place."""
    for v, m in zip(kernels, masks):
        v.assign(keras.ops.multiply(v.value, keras.ops.cast(m, v.dtype)))


def kernel_sparsity(kernels: Sequence[Any]) -> dict[str, float]:
    """Fraction of exact zeros in each kernel, by variable path."""
    return {v.path: float(np.mean(keras.ops.convert_to_numpy(v.value) == 0)) for v in kernels}


class KeepMasks(keras.callbacks.Callback):
    """Re-impose the masks after every training batch (the optimiser moves pruned weights)."""

    def __init__(self, kernels: Sequence[Any], masks: Sequence[np.ndarray]) -> None:
        super().__init__()
        self.kernels = list(kernels)
        self.masks = [keras.ops.convert_to_tensor(m) for m in masks]

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # Reading self.model makes the JAX trainer write its state into the variables first,
        # and read them back before the next batch; other backends train the variables.
        _ = self.model
        apply_masks(self.kernels, self.masks)


def _accuracy(model: keras.Model, check: tuple[np.ndarray, np.ndarray] | None,
              batch_size: int) -> float | None:
    if check is None:
        return None
    x, y = check
    probs = model.predict(as_model_input(x, model_input_size(model)), batch_size=256, verbose=0)
    return float(np.mean(np.argmax(probs, axis=1) == np.asarray(y)))


def prune_model(model: keras.Model, sparsity: float, x: np.ndarray | None = None,
                y: np.ndarray | None = None, epochs: int = 1, batch_size: int = 64,
                learning_rate: float = 1e-4, skip_output: bool = True,
                check: tuple[np.ndarray, np.ndarray] | None = None, seed: int = 0,
                verbose: int = 0) -> PruneResult:
    """A copy of `model` with each kernel pruned to `sparsity` by magnitude, fine-tuned for
    `epochs` on faces `x` (uint8 (N, H, W), labels `y`) with the masks kept.

    The input model is left unchanged. Fine-tuning uses Adam at `learning_rate` with the
    model's own preprocessing and no augmentation (flip TTA inside a deployment model already
    sees both views); `epochs=0` prunes only. `check` (faces, labels) gives the accuracy before
    and after fine-tuning. Raises ConfigError for a bad sparsity, epochs or data.
    """
    sparsity = check_sparsity(sparsity)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"epochs must be an int >= 0, got {epochs!r}")
    if epochs and (x is None or y is None or len(x) == 0 or len(x) != len(y)):
        raise ConfigError("fine-tuning needs equal, non-zero numbers of faces x and labels y "
                          "(or epochs=0 to prune without fine-tuning)")
    t0 = time.perf_counter()
    pruned = keras.models.clone_model(model)
    pruned.set_weights(model.get_weights())
    kernels = prunable_kernels(pruned, skip_output)
    if not kernels:
        raise ConfigError(f"model {model.name!r} has no conv / dense kernel to prune")
    masks = magnitude_masks(kernels, sparsity)
    apply_masks(kernels, masks)
    before = _accuracy(pruned, check, batch_size)
    loss: list[float] = []
    if epochs:
        keras.utils.set_random_seed(seed)  # the batch order and dropout
        pruned.compile(optimizer=keras.optimizers.Adam(learning_rate),
                       loss="sparse_categorical_crossentropy")
        hist = pruned.fit(as_model_input(x, model_input_size(pruned)),
                          np.asarray(y, dtype=np.int64), epochs=epochs, batch_size=batch_size,
                          shuffle=True, callbacks=[KeepMasks(kernels, masks)], verbose=verbose)
        apply_masks(kernels, masks)
        loss = [float(v) for v in hist.history.get("loss", [])]
    per_kernel = kernel_sparsity(kernels)
    sizes = {v.path: int(np.prod(v.shape)) for v in kernels}
    n_pruned = sum(sizes.values())
    zeros_all = sum(int(np.sum(keras.ops.convert_to_numpy(v.value) == 0)) for v in pruned.weights)
    return PruneResult(
        model=pruned, sparsity=sparsity,
        achieved=sum(per_kernel[p] * n for p, n in sizes.items()) / n_pruned,
        model_sparsity=zeros_all / pruned.count_params(), per_kernel=per_kernel,
        pruned_params=n_pruned, total_params=int(pruned.count_params()),
        fine_tune_images=0 if not epochs else int(len(x)), epochs=epochs, loss=loss,
        check_accuracy_before=before, check_accuracy=_accuracy(pruned, check, batch_size),
        seconds=time.perf_counter() - t0)
