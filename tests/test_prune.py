"""Magnitude pruning with fine-tuning (fer_study.prune) and the optimisation table that
measures the pruned and quantised variants of a model (fer_study.optimise)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fer_study.errors import ConfigError
from fer_study.labels import NUM_CLASSES
from fer_study.prune import KeepMasks, apply_masks, magnitude_masks, prunable_kernels, prune_model
from fer_study.synthetic import make_synthetic


def _tiny_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((48, 48, 1))
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.Conv2D(8, 3, strides=4, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(48, activation="relu")(x)
    out = keras.layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return keras.Model(inp, out, name="tiny")


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray]:
    return make_synthetic(96, seed=5)


def test_each_kernel_reaches_the_sparsity_and_fine_tuning_keeps_the_zeros(faces):
    x, y = faces
    model = _tiny_model()
    original = [w.copy() for w in model.get_weights()]
    masks = magnitude_masks(prunable_kernels(model), 0.75)
    res = prune_model(model, 0.75, x, y, epochs=2, batch_size=32, learning_rate=1e-2,
                      check=(x, y))

    kernels = prunable_kernels(res.model)
    assert [v.path for v in kernels] == list(res.per_kernel)
    assert len(kernels) == 2  # the conv and the hidden dense; the 7-way head stays dense
    for v, mask in zip(kernels, masks):
        w = keras.ops.convert_to_numpy(v.value)
        assert res.per_kernel[v.path] == pytest.approx(round(0.75 * w.size) / w.size)
        assert (w[mask == 0] == 0).all()  # every pruned weight is still zero...
        assert (w[mask == 1] != 0).mean() > 0.99  # ...and the survivors are not
    head = res.model.layers[-1].kernel
    assert (keras.ops.convert_to_numpy(head.value) != 0).all()
    assert res.achieved == pytest.approx(0.75, abs=1e-3) and res.epochs == 2
    assert 0 < res.model_sparsity < res.achieved and len(res.loss) == 2
    assert res.fine_tune_images == len(x)
    # fine-tuning moved the surviving weights (it trained), and the input model is untouched
    survivors = keras.ops.convert_to_numpy(kernels[1].value)[masks[1] == 1]
    before = model.layers[-2].kernel.numpy()[masks[1] == 1]
    assert not np.allclose(survivors, before)
    for a, b in zip(original, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert res.check_accuracy_before is not None and res.check_accuracy is not None


def test_the_masks_hold_after_every_training_batch(faces):
    """KeepMasks re-imposes the zeros after each batch, so every forward pass of the
    fine-tuning sees the pruned network (not only the model that comes out of it)."""
    x, y = faces
    model = _tiny_model()
    kernels = prunable_kernels(model)
    masks = magnitude_masks(kernels, 0.5)
    apply_masks(kernels, masks)
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            _ = self.model  # JAX: the trainer's state is written into the variables
            seen.append(all((keras.ops.convert_to_numpy(v.value)[m == 0] == 0).all()
                            for v, m in zip(kernels, masks)))

    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    xin = x[..., None].astype("float32")
    model.fit(xin, y, epochs=1, batch_size=16, verbose=0, callbacks=[KeepMasks(kernels, masks),
                                                                      Probe()])
    assert len(seen) == 6 and all(seen)
    model.fit(xin, y, epochs=1, batch_size=16, verbose=0, callbacks=[Probe()])
    assert not any(seen[6:])  # without it the optimiser revives the pruned weights at once


def test_a_pruned_model_still_predicts(faces):
    x, y = faces
    res = prune_model(_tiny_model(), 0.5, epochs=0)  # prune only
    probs = res.model.predict(x[:, :, :, None].astype("float32"), verbose=0)
    assert probs.shape == (len(x), NUM_CLASSES) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert res.loss == [] and res.fine_tune_images == 0
    everything = prune_model(_tiny_model(), 0.5, epochs=0, skip_output=False)
    assert len(everything.per_kernel) == 3 and everything.achieved == pytest.approx(0.5, 1e-3)


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1, True, "0.5", None])
def test_bad_sparsity_is_a_clear_config_error(bad):
    with pytest.raises(ConfigError, match=r"sparsity must be a number in \[0, 1\)"):
        prune_model(_tiny_model(), bad, epochs=0)


def test_bad_fine_tuning_settings_are_config_errors(faces):
    x, y = faces
    with pytest.raises(ConfigError, match="epochs must be an int >= 0"):
        prune_model(_tiny_model(), 0.5, x, y, epochs=-1)
    with pytest.raises(ConfigError, match="fine-tuning needs equal, non-zero numbers"):
        prune_model(_tiny_model(), 0.5, x, y[:-1], epochs=1)
    with pytest.raises(ConfigError, match="fine-tuning needs"):
        prune_model(_tiny_model(), 0.5, epochs=1)


def test_optimisation_table_measures_every_variant_the_same_way(faces, tmp_path):
    from fer_study.optimise import optimisation_table
    from fer_study.plots import optimisation_tradeoff

    x, y = faces
    model_file = tmp_path / "tiny.keras"
    _tiny_model().save(model_file)
    df = optimisation_table(model_file, tmp_path / "out", {"PrivateTest": (x[:48], y[:48]),
                                                           "PublicTest": (x[48:], y[48:])},
                            train=(x, y), variants=["float32"], sparsities=[0.0, 0.9],
                            epochs=1, latency_calls=3, progress=False)
    assert list(df["variant"]) == ["keras float32", "tflite float32",
                                   "fine-tune only (0% pruned, control), tflite float32",
                                   "pruned 90% + fine-tune, tflite float32"]
    keras_row, dense, control, pruned = df.to_dict("records")
    # the control is fine-tuned like the pruned model but keeps every weight
    assert control["achieved_sparsity"] == 0.0 and control["fine_tune_images"] == len(y)
    assert control["gzip_kb"] > 0.9 * dense["gzip_kb"]
    assert dense["agreement"] == 1.0 and dense["accuracy PrivateTest"] == \
        keras_row["accuracy PrivateTest"]
    assert pruned["achieved_sparsity"] == pytest.approx(0.9, abs=1e-3)
    # the flatbuffer keeps every float of a pruned kernel; only the compressed file shrinks
    assert pruned["size_kb"] == pytest.approx(dense["size_kb"], rel=0.05)
    assert pruned["gzip_kb"] < 0.6 * dense["gzip_kb"]
    assert all(0 <= r["accuracy PublicTest"] <= 1 and r["latency_ms"] > 0
               for r in df.to_dict("records"))
    assert [p["sparsity"] for p in df.attrs["pruning"]] == [0.0, 0.9]
    assert (tmp_path / "out" / "tiny_pruned90_float32.tflite").is_file()
    fig = optimisation_tradeoff(df.to_dict("records"), "accuracy PrivateTest")
    assert len(fig.axes) == 2
    with pytest.raises(ConfigError, match="need Training faces"):
        optimisation_table(model_file, tmp_path / "out", {"PrivateTest": (x, y)},
                           sparsities=[0.5])
