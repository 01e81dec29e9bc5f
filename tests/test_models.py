"""Unit tier for models: the input/output contract, the registry, freezing and weight files."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fer_study.models import (
    REGISTRY,
    BackbonePreprocess,
    WeightsUnavailable,
    build_model,
    count_params,
    get_spec,
    set_trainable,
    transfer_model,
)


@pytest.mark.parametrize("name", ["baseline_cnn", "mini_xception", "vgg_style"])
def test_scratch_models_keep_the_contract(name):
    model = build_model(name)
    assert model.input_shape == (None, 48, 48, 1)
    x = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype("float32")
    p = np.asarray(model(x, training=False))
    assert p.shape == (3, 7)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert get_spec(name).kind == "scratch"


def test_mini_xception_size_and_crop_input():
    assert 50_000 < count_params(build_model("mini_xception"))["total"] < 70_000
    assert build_model("mini_xception", input_size=44).input_shape == (None, 44, 44, 1)


def test_registry_errors_and_kinds():
    with pytest.raises(ValueError, match="unknown model 'nope'; available: baseline_cnn"):
        build_model("nope")
    transfer = {n for n, s in REGISTRY.items() if s.is_transfer}
    assert {"vgg16", "resnet50", "mobilenetv2", "vggface_vgg16", "efficientnet_lite0"} <= transfer
    # the control arm is from scratch and must not carry a transfer-learning label
    assert get_spec("efficientnet_lite0_scratch").kind == "scratch"
    assert get_spec("efficientnet_lite0_scratch").pretrained is None


def test_caffe_preprocess_matches_keras_applications():
    rgb = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    ours = np.asarray(BackbonePreprocess("caffe")(rgb))
    ref = keras.applications.vgg16.preprocess_input(rgb.copy())
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    mobile = np.asarray(BackbonePreprocess("tf")(rgb))
    np.testing.assert_allclose(mobile, keras.applications.mobilenet_v2.preprocess_input(
        rgb.copy()), atol=1e-5)


def test_transfer_model_loads_a_backbone_weight_file(tmp_path):
    donor = keras.applications.MobileNetV2(include_top=False, weights=None,
                                          input_shape=(32, 32, 3), alpha=1.0)
    path = tmp_path / "mobilenetv2_backbone.weights.h5"
    donor.save_weights(str(path))
    model = transfer_model("mobilenetv2", backbone_size=32, weights=str(path))
    base = model.get_layer("backbone")
    for a, b in zip(base.get_weights(), donor.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.zeros((1, 48, 48, 1), "float32")
    assert model(x).shape == (1, 7)
    with pytest.raises(WeightsUnavailable, match="backbone weights file not found"):
        transfer_model("mobilenetv2", backbone_size=32, weights=str(tmp_path / "missing.h5"))


# Keras warns that 32 px is not a published MobileNetV2 size before it tries the download.
@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square")
def test_imagenet_download_failure_is_reported(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.applications.mobilenet_v2.file_utils.get_file", offline)
    with pytest.raises(WeightsUnavailable, match="ImageNet weights for mobilenetv2 could not"):
        build_model("mobilenetv2", backbone_size=32)


def test_freezing_modes():
    model = transfer_model("mobilenetv2", backbone_size=32, weights=None)
    base = model.get_layer("backbone")
    set_trainable(model, "frozen")
    assert not base.trainable
    head_only = len(model.trainable_weights)
    set_trainable(model, "top_n", 10)
    trainable = [la for la in base.layers if la.trainable and la.weights]
    assert trainable and all(la in base.layers[-10:] for la in trainable)
    assert not any(isinstance(la, keras.layers.BatchNormalization) for la in trainable)
    assert len(model.trainable_weights) > head_only
    set_trainable(model, "all")
    assert len(model.trainable_weights) > len(trainable) * 2
    with pytest.raises(ValueError, match="no 'backbone' layer"):
        set_trainable(build_model("mini_xception"), "frozen")


def test_transfer_model_saves_and_reloads(tmp_path):
    model = transfer_model("mobilenetv2", backbone_size=32, weights=None)
    x = np.random.default_rng(2).uniform(0, 255, (2, 48, 48, 1)).astype("float32")
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), atol=1e-5)


def test_deployment_model_is_the_mean_over_members_and_mirrors(tmp_path):
    from fer_study import models
    from fer_study.models import deployment_model

    a = models.mini_xception(44, filters=(8, 16))
    b = models.mini_xception(44, filters=(8, 16))  # same architecture and name: a second seed
    x = np.random.default_rng(0).uniform(0, 255, (5, 44, 44, 1)).astype("float32")
    pa, pb = (m.predict(x, verbose=0) for m in (a, b))
    pa_m, pb_m = (m.predict(x[:, :, ::-1], verbose=0) for m in (a, b))
    ens = deployment_model([a, b], flip=True)
    want = (pa + pb + pa_m + pb_m) / 4
    np.testing.assert_allclose(ens.predict(x, verbose=0), want, atol=1e-5)
    np.testing.assert_allclose(deployment_model([a]).predict(x, verbose=0), pa, atol=1e-6)
    path = tmp_path / "ens.keras"
    ens.save(path)
    back = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(back.predict(x, verbose=0), want, atol=1e-5)
    with pytest.raises(ValueError, match="input shape"):
        deployment_model([a, models.mini_xception(48, filters=(8, 16))])
    with pytest.raises(ValueError, match="at least one"):
        deployment_model([])


def test_scratch_twin_batchnorm_follows_its_fast_moving_statistics():
    """A randomly initialised backbone's activations move fast: momentum 0.9, not 0.99,
    keeps inference-time BatchNorm statistics close to them (the pretrained model keeps its
    own 0.99)."""
    import keras

    from fer_study.errors import ConfigError
    from fer_study.models import build_model, transfer_model

    def momenta(m):
        return {layer.momentum for layer in m.get_layer("backbone")._flatten_layers()
                if isinstance(layer, keras.layers.BatchNormalization)}

    assert momenta(build_model("efficientnet_lite0_scratch", backbone_size=32)) == {0.9}
    assert momenta(build_model("efficientnet_lite0", backbone_size=32, weights=None)) == {0.99}
    with pytest.raises(ConfigError, match="bn_momentum"):
        transfer_model("efficientnet_lite0", backbone_size=32, weights=None, bn_momentum=1.5)
