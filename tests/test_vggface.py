"""VGGFace backbones: architecture sizes, keras-vggface .h5 loading, preprocessing."""

from __future__ import annotations

from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from fer_study import vggface
from fer_study.vggface import (
    WEIGHT_FILES,
    build_vggface_backbone,
    load_vggface_weights,
    vggface_preprocess,
    vggface_weights_path,
)


def to_np(x: object) -> np.ndarray:
    """numpy value of a tensor or variable (Variable.numpy avoids numpy-2 __array__ warnings)."""
    return x.numpy() if isinstance(x, keras.Variable) else keras.ops.convert_to_numpy(x)


SIZE = 64  # conv params do not depend on input size; 64x64 keeps CPU time small

# Published sizes of the no-top models, derived independently of our code:
# - VGG16 no-top is the same conv stack as ImageNet VGG16 no-top: 14,714,688.
# - keras-vggface ResNet50 = Keras-applications ResNet50 no-top (23,587,712) minus its conv
#   biases (keras-vggface convs have none): 26,560 output channels over all 53 convs.
# - SENet50 adds per block two biased 1x1 convs C -> C/16 -> C (C = 256/512/1024/2048 for
#   3/4/6/3 blocks): 2,530,992 more.
RESNET50_NOTOP = 23_587_712 - (
    64 + 3 * (64 + 64 + 256) + 256 + 4 * (128 + 128 + 512) + 512
    + 6 * (256 + 256 + 1024) + 1024 + 3 * (512 + 512 + 2048) + 2048
)  # fmt: skip
SE_EXTRA = sum(n * (2 * c * (c // 16) + c // 16 + c) for c, n in [(256, 3), (512, 4), (1024, 6),
                                                                  (2048, 3)])  # fmt: skip
EXPECTED_PARAMS = {
    "vgg16": 14_714_688,
    "resnet50": RESNET50_NOTOP,
    "senet50": RESNET50_NOTOP + SE_EXTRA,
}
EXPECTED_OUTPUT = {"vgg16": (2, 2, 512), "resnet50": (2, 2, 2048), "senet50": (2, 2, 2048)}


def test_expected_param_numbers_are_the_published_ones() -> None:
    assert EXPECTED_PARAMS["resnet50"] == 23_561_152
    assert EXPECTED_PARAMS["senet50"] == 26_092_144


@pytest.fixture(scope="module")
def models() -> dict[str, keras.Model]:
    return {arch: build_vggface_backbone(arch, (SIZE, SIZE, 3)) for arch in vggface.ARCHS}


def _randomize(model: keras.Model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for v in model.weights:
        shape = tuple(v.shape)
        # positive values keep moving_variance valid for BN
        v.assign(rng.uniform(0.05, 0.5, shape).astype("float32") if "variance" in v.name
                 else rng.normal(0.0, 0.05, shape).astype("float32"))  # fmt: skip


def write_keras2_h5(
    path: Path,
    model: keras.Model,
    overrides: dict[str, list[np.ndarray]] | None = None,
    drop: tuple[str, ...] = (),
    extra: dict[str, list[tuple[str, np.ndarray]]] | None = None,
) -> None:
    """Write `model`'s weights the way keras-vggface's Keras-2 ``save_weights`` did.

    Root attrs ``layer_names`` (every layer, weightless ones too), one group per layer (``/`` in
    names makes nested groups) with attr ``weight_names`` = ["<layer>/<weight>:0", ...] and one
    dataset per weight name. Layer names are keras-vggface's (``__`` back to ``/``).
    """
    overrides = overrides or {}
    entries: list[tuple[str, list[tuple[str, np.ndarray]]]] = [("input_1", [])]
    for layer in model.layers[1:]:
        name = layer.name.replace("__", "/")
        if name in drop:
            continue
        arrays = overrides.get(name, [to_np(v) for v in layer.weights])
        weights = [(f"{name}/{v.name}:0", a) for v, a in zip(layer.weights, arrays, strict=True)]
        entries.append((name, weights))
    entries += list((extra or {}).items())
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode("utf8") for n, _ in entries]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.5"
        for name, weights in entries:
            group = f.create_group(name)
            group.attrs["weight_names"] = [w.encode("utf8") for w, _ in weights]
            for w, array in weights:
                group.create_dataset(w, data=array)


@pytest.mark.parametrize("arch", vggface.ARCHS)
def test_param_count_and_output_shape(models: dict[str, keras.Model], arch: str) -> None:
    model = models[arch]
    assert model.count_params() == EXPECTED_PARAMS[arch]
    assert tuple(model.output.shape[1:]) == EXPECTED_OUTPUT[arch]


def test_layer_names_follow_keras_vggface(models: dict[str, keras.Model]) -> None:
    vgg = {layer.name for layer in models["vgg16"].layers}
    assert {"conv1_1", "conv3_3", "conv5_3", "pool1", "pool5"} <= vgg
    assert not {n for n in vgg if n.startswith("fc")}  # no top
    resnet = {layer.name for layer in models["resnet50"].layers}
    assert {"conv1__7x7_s2", "conv1__7x7_s2__bn", "conv2_1_1x1_reduce", "conv2_1_1x1_reduce__bn",
            "conv2_1_1x1_proj", "conv2_1_1x1_proj__bn", "conv2_3_1x1_increase__bn",
            "conv5_3_3x3__bn"} <= resnet  # fmt: skip
    assert "conv2_2_1x1_proj" not in resnet  # identity blocks have no projection
    senet = {layer.name for layer in models["senet50"].layers}
    assert {"conv2_1_1x1_down", "conv2_1_1x1_up", "conv5_3_1x1_up"} <= senet
    assert models["senet50"].get_layer("conv2_1_1x1_reduce__bn").epsilon == pytest.approx(1e-4)
    assert models["resnet50"].get_layer("conv2_1_1x1_reduce__bn").epsilon == pytest.approx(1e-3)


@pytest.mark.parametrize("arch", vggface.ARCHS)
def test_h5_round_trip(models: dict[str, keras.Model], arch: str, tmp_path: Path) -> None:
    source = models[arch]
    _randomize(source, seed=len(arch))
    path = tmp_path / "weights.h5"
    # a with-top file: its fc layers must be ignored by a backbone
    top = {"fc6": [("fc6/kernel:0", np.zeros((4, 3), "float32")), ("fc6/bias:0", np.zeros(3))],
           "fc6/relu": [], "classifier": [("classifier/kernel:0", np.zeros((2, 2)))]}  # fmt: skip
    write_keras2_h5(path, source, extra=top)

    fresh = build_vggface_backbone(arch, (SIZE, SIZE, 3))
    load_vggface_weights(fresh, path)
    for a, b in zip(source.weights, fresh.weights, strict=True):
        assert a.path == b.path
        np.testing.assert_array_equal(to_np(a), to_np(b))
    x = np.random.default_rng(0).uniform(0, 255, (1, SIZE, SIZE, 3)).astype("float32")
    x = to_np(vggface_preprocess(x, arch))
    np.testing.assert_allclose(source.predict(x, verbose=0), fresh.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)  # fmt: skip

    # the same file through build_vggface_backbone(weights=path)
    again = build_vggface_backbone(arch, (SIZE, SIZE, 3), weights=path)
    np.testing.assert_array_equal(to_np(again.weights[-1]), to_np(source.weights[-1]))


def test_wrong_shape_names_layer_and_both_shapes(
    models: dict[str, keras.Model], tmp_path: Path
) -> None:
    model = models["resnet50"]
    path = tmp_path / "bad.h5"
    bad_kernel = np.zeros((7, 7, 3, 32), "float32")
    write_keras2_h5(path, model, overrides={"conv1/7x7_s2": [bad_kernel]})
    before = to_np(model.get_layer("conv2_1_3x3").kernel).copy()
    with pytest.raises(ValueError) as err:
        load_vggface_weights(model, path)
    msg = str(err.value)
    assert "conv1/7x7_s2" in msg and "(7, 7, 3, 32)" in msg and "(7, 7, 3, 64)" in msg
    # nothing half-loaded
    np.testing.assert_array_equal(before, to_np(model.get_layer("conv2_1_3x3").kernel))


def test_missing_model_layer_in_file_is_an_error(
    models: dict[str, keras.Model], tmp_path: Path
) -> None:
    path = tmp_path / "missing.h5"
    write_keras2_h5(path, models["vgg16"], drop=("conv4_2",))
    with pytest.raises(ValueError, match=r"missing from the weight file.*conv4_2"):
        load_vggface_weights(models["vgg16"], path)


def test_unknown_weighted_layer_in_file_is_an_error(
    models: dict[str, keras.Model], tmp_path: Path
) -> None:
    path = tmp_path / "extra.h5"
    extra = {"conv6_1": [("conv6_1/kernel:0", np.zeros((1, 1, 2, 2), "float32"))]}
    write_keras2_h5(path, models["vgg16"], extra=extra)
    with pytest.raises(ValueError, match=r"not in the model.*conv6_1"):
        load_vggface_weights(models["vgg16"], path)


def test_swapped_bn_weights_are_an_error(models: dict[str, keras.Model], tmp_path: Path) -> None:
    model = models["resnet50"]
    path = tmp_path / "swapped.h5"
    write_keras2_h5(path, model)
    with h5py.File(path, "r+") as f:
        group = f["conv1/7x7_s2/bn"]
        names = list(group.attrs["weight_names"])
        group.attrs["weight_names"] = [names[1], names[0], *names[2:]]
    with pytest.raises(ValueError, match="conv1/7x7_s2/bn"):
        load_vggface_weights(model, path)


def test_missing_file_gives_download_instructions(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        vggface_weights_path("resnet50", tmp_path)
    msg = str(err.value)
    info = WEIGHT_FILES["resnet50"]
    assert info["url"] == (
        "https://github.com/rcmalli/keras-vggface/releases/download/v2.0/"
        "rcmalli_vggface_tf_notop_resnet50.h5"
    )
    assert str(info["url"]) in msg and str(info["filename"]) in msg and str(tmp_path) in msg
    assert "sha256" in msg


def test_weights_dir_env_and_keras_vggface_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(vggface.WEIGHTS_ENV, str(tmp_path))
    target = tmp_path / "vggface" / str(WEIGHT_FILES["vgg16"]["filename"])
    target.parent.mkdir()
    target.write_bytes(b"weights")
    assert vggface_weights_path("vgg16") == target


def test_sha256_is_checked_when_known(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / str(WEIGHT_FILES["senet50"]["filename"])
    target.write_bytes(b"not the real weights")
    good = vggface.sha256_file(target)
    monkeypatch.setitem(WEIGHT_FILES["senet50"], "sha256", good)
    assert vggface_weights_path("senet50", tmp_path) == target
    monkeypatch.setitem(WEIGHT_FILES["senet50"], "sha256", "0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        vggface_weights_path("senet50", tmp_path)


def _reference_preprocess(x: np.ndarray, version: int) -> np.ndarray:
    # keras_vggface.utils.preprocess_input, channels_last branch, transcribed
    x_temp = np.copy(x)[..., ::-1]
    means = {1: (93.5940, 104.7624, 129.1863), 2: (91.4953, 103.8827, 131.0912)}[version]
    for channel, mean in enumerate(means):
        x_temp[..., channel] -= mean
    return x_temp


@pytest.mark.parametrize(("version", "arch"), [(1, "vgg16"), (2, "resnet50"), (2, "senet50")])
def test_preprocess_matches_keras_vggface(version: int, arch: str) -> None:
    x = np.random.default_rng(1).uniform(0, 255, (2, 5, 4, 3)).astype("float32")
    expected = _reference_preprocess(x, version)
    np.testing.assert_allclose(to_np(vggface_preprocess(x, version)), expected, atol=1e-4)
    np.testing.assert_allclose(to_np(vggface_preprocess(x, arch)), expected, atol=1e-4)
    # a pure-red pixel becomes BGR (0 - B mean, 0 - G mean, 255 - R mean)
    red = np.array([[[[255.0, 0.0, 0.0]]]], "float32")
    out = to_np(vggface_preprocess(red, version))[0, 0, 0]
    assert out[2] > 0 > out[0]


def test_unknown_arch_and_version() -> None:
    with pytest.raises(ValueError, match="unknown VGGFace architecture"):
        build_vggface_backbone("resnet101")
    with pytest.raises(ValueError, match="version"):
        vggface_preprocess(np.zeros((1, 2, 2, 3)), 3)
