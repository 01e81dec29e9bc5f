"""VGGFace backbones (VGG16 / ResNet50 / SENet50) rebuilt in Keras 3.

`keras-vggface` (rcmalli) does not import under Keras 3, but its published `.h5` weight files are
plain Keras-2 HDF5 weight files. This module re-creates its three architectures layer for layer so
those files load by layer name, without the package.

Naming: Keras 3 forbids ``/`` in layer names, while keras-vggface uses it (``conv1/7x7_s2/bn``,
``fc6/relu``). Every ``/`` is therefore written as ``__`` in the Keras model
(``conv1__7x7_s2__bn``); `keras_layer_name` is the one place that mapping lives and the loader
applies it to the names found in the file. All other names are exactly keras-vggface's.

The backbones have no top: they end at the last conv stage (VGG16: ``pool5``; ResNet50/SENet50: the
stage-5 output, *before* keras-vggface's fixed 7x7 ``avg_pool``, so any input size >= 32 works).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import keras
import numpy as np
from keras import layers, ops

from fer_study.data import sha256_file  # noqa: F401  (public here too: tests use it)

ARCHS: tuple[str, ...] = ("vgg16", "resnet50", "senet50")

_RELEASE = "https://github.com/rcmalli/keras-vggface/releases/download/v2.0/"

# Published no-top weight files (keras_vggface/utils.py). No checksums are published upstream and
# none could be computed here (no download possible), so sha256 is None: a file is verified only
# when its sha256 is filled in below.
WEIGHT_FILES: dict[str, dict[str, str | None]] = {
    arch: {
        "url": f"{_RELEASE}rcmalli_vggface_tf_notop_{arch}.h5",
        "filename": f"rcmalli_vggface_tf_notop_{arch}.h5",
        "sha256": None,
    }
    for arch in ARCHS
}

# keras_vggface.utils.preprocess_input: version 1 = VGGFace1 (vgg16), version 2 = VGGFace2.
PREPROCESS_VERSION: dict[str, int] = {"vgg16": 1, "resnet50": 2, "senet50": 2}
_BGR_MEANS: dict[int, tuple[float, float, float]] = {
    1: (93.5940, 104.7624, 129.1863),
    2: (91.4953, 103.8827, 131.0912),
}

# Layers of the classification heads: present in the with-top files, absent from our backbones.
_TOP_PREFIXES: tuple[str, ...] = ("fc", "classifier")

WEIGHTS_ENV = "FER_STUDY_WEIGHTS"


def keras_layer_name(h5_name: str) -> str:
    """Keras-3-legal name for a keras-vggface layer name (``/`` is not allowed in Keras 3)."""
    return h5_name.replace("/", "__")


def _check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise ValueError(f"unknown VGGFace architecture {arch!r}; expected one of {ARCHS}")
    return arch


# --------------------------------------------------------------------------- architectures


def _vgg16(x: keras.KerasTensor) -> keras.KerasTensor:
    for block, (filters, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
        for i in range(1, convs + 1):
            x = layers.Conv2D(
                filters, 3, activation="relu", padding="same", name=f"conv{block}_{i}"
            )(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"pool{block}")(x)
    return x


def _bn(name: str, eps: float) -> layers.BatchNormalization:
    return layers.BatchNormalization(axis=-1, epsilon=eps, name=keras_layer_name(name))


def _se_block(x: keras.KerasTensor, prefix: str) -> keras.KerasTensor:
    # keras-vggface senet_se_block: squeeze to C/16 with biased 1x1 convs, then rescale.
    channels = int(x.shape[-1])
    se = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}_se_pool")(x)
    se = layers.Conv2D(channels // 16, 1, use_bias=True, name=f"{prefix}_1x1_down")(se)
    se = layers.Activation("relu", name=f"{prefix}_1x1_down_relu")(se)
    se = layers.Conv2D(channels, 1, use_bias=True, name=f"{prefix}_1x1_up")(se)
    se = layers.Activation("sigmoid", name=f"{prefix}_1x1_up_sigmoid")(se)
    return layers.Multiply(name=f"{prefix}_se_scale")([x, se])


def _bottleneck(
    x: keras.KerasTensor,
    filters: Sequence[int],
    stage: int,
    block: int,
    strides: int,
    project: bool,
    se: bool,
    eps: float,
) -> keras.KerasTensor:
    """keras-vggface resnet/senet conv block (``project``) or identity block; convs have no bias."""
    f1, f2, f3 = filters
    p = f"conv{stage}_{block}"
    shortcut = x
    y = layers.Conv2D(f1, 1, strides=strides, use_bias=False, name=f"{p}_1x1_reduce")(x)
    y = _bn(f"{p}_1x1_reduce/bn", eps)(y)
    y = layers.Activation("relu", name=f"{p}_1x1_reduce_relu")(y)
    y = layers.Conv2D(f2, 3, padding="same", use_bias=False, name=f"{p}_3x3")(y)
    y = _bn(f"{p}_3x3/bn", eps)(y)
    y = layers.Activation("relu", name=f"{p}_3x3_relu")(y)
    y = layers.Conv2D(f3, 1, use_bias=False, name=f"{p}_1x1_increase")(y)
    y = _bn(f"{p}_1x1_increase/bn", eps)(y)
    if se:
        y = _se_block(y, p)
    if project:
        shortcut = layers.Conv2D(f3, 1, strides=strides, use_bias=False, name=f"{p}_1x1_proj")(x)
        shortcut = _bn(f"{p}_1x1_proj/bn", eps)(shortcut)
    y = layers.Add(name=f"{p}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{p}_relu")(y)


def _resnet(x: keras.KerasTensor, se: bool) -> keras.KerasTensor:
    # keras-vggface: RESNET50 keeps Keras 2's default BN epsilon (1e-3), SENET50 sets 1e-4.
    eps = 1e-4 if se else 1e-3
    x = layers.Conv2D(
        64, 7, strides=2, padding="same", use_bias=False, name=keras_layer_name("conv1/7x7_s2")
    )(x)
    x = _bn("conv1/7x7_s2/bn", eps)(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    stages = [(2, (64, 64, 256), 3), (3, (128, 128, 512), 4), (4, (256, 256, 1024), 6),
              (5, (512, 512, 2048), 3)]  # fmt: skip
    for stage, filters, blocks in stages:
        for block in range(1, blocks + 1):
            strides = (1 if stage == 2 else 2) if block == 1 else 1
            x = _bottleneck(x, filters, stage, block, strides, block == 1, se, eps)
    return x


def build_vggface_backbone(
    arch: str,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    weights: str | os.PathLike[str] | None = None,
) -> keras.Model:
    """A keras-vggface backbone without its top; expects `vggface_preprocess`-ed input.

    `weights`: None (random init), ``"vggface"`` (the published no-top file, located with
    `vggface_weights_path`), or a path to a keras-vggface ``.h5`` weight file.
    """
    _check_arch(arch)
    inputs = keras.Input(shape=input_shape, name="input")
    outputs = _vgg16(inputs) if arch == "vgg16" else _resnet(inputs, se=arch == "senet50")
    model = keras.Model(inputs, outputs, name=f"vggface_{arch}")
    if weights is not None:
        path = vggface_weights_path(arch) if str(weights) == "vggface" else Path(weights)
        load_vggface_weights(model, path)
    return model


# --------------------------------------------------------------------------- weights


def _decode(value: bytes | str) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _h5_str_list(group: h5py.Group, key: str) -> list[str] | None:
    """A Keras-2 string-list attribute; Keras 2 splits big ones into ``key0``, ``key1``, ..."""
    if key in group.attrs:
        return [_decode(v) for v in group.attrs[key]]
    if f"{key}0" not in group.attrs:
        return None
    out: list[str] = []
    chunk = 0
    while f"{key}{chunk}" in group.attrs:
        out += [_decode(v) for v in group.attrs[f"{key}{chunk}"]]
        chunk += 1
    return out


def _read_keras2_h5(path: str | os.PathLike[str]) -> dict[str, list[tuple[str, np.ndarray]]]:
    """{layer name: [(weight name, array), ...]} from a Keras-2 HDF5 weights (or model) file."""
    with h5py.File(path, "r") as f:
        group = f.get("model_weights", f)  # full-model saves nest the weights
        layer_names = _h5_str_list(group, "layer_names")
        if layer_names is None:
            raise ValueError(f"{path}: not a Keras-2 HDF5 weight file (no 'layer_names' attribute)")
        out: dict[str, list[tuple[str, np.ndarray]]] = {}
        for name in layer_names:
            layer_group = group[name]
            names = _h5_str_list(layer_group, "weight_names") or []
            out[name] = [(w, np.asarray(layer_group[w])) for w in names]
    return out


def _short_weight_name(name: str) -> str:
    # "conv1/7x7_s2/bn/moving_mean:0" -> "moving_mean"
    return name.rsplit("/", 1)[-1].split(":", 1)[0]


def load_vggface_weights(model: keras.Model, path: str | os.PathLike[str]) -> None:
    """Load a keras-vggface ``.h5`` weight file into `model`, matching layers by name.

    Every weighted model layer must be in the file with the same number and shapes of weights
    (else `ValueError`, naming the layer and both shapes). Weighted layers in the file that the
    model lacks are an error unless they belong to the classification top (``fc*``,
    ``classifier``), so a with-top file also loads into a backbone. Weightless file layers
    (keras-vggface's auto-named activations/pooling) are ignored. Nothing is assigned unless
    every check passes.
    """
    file_layers = _read_keras2_h5(path)
    by_keras_name = {keras_layer_name(n): (n, w) for n, w in file_layers.items() if w}
    model_layers = {layer.name: layer for layer in model.layers if layer.weights}

    extra = [
        h5_name
        for kname, (h5_name, _) in by_keras_name.items()
        if kname not in model_layers and not h5_name.startswith(_TOP_PREFIXES)
    ]
    if extra:
        raise ValueError(f"{path}: layers in the weight file but not in the model: {extra}")
    missing = [name for name in model_layers if name not in by_keras_name]
    if missing:
        raise ValueError(f"{path}: model layers missing from the weight file: {missing}")

    assignments: list[tuple[keras.layers.Layer, list[np.ndarray]]] = []
    for kname, layer in model_layers.items():
        h5_name, weights = by_keras_name[kname]
        if len(weights) != len(layer.weights):
            raise ValueError(
                f"layer {h5_name!r}: file has {len(weights)} weights "
                f"{[w for w, _ in weights]}, model has {len(layer.weights)}"
            )
        model_names = {v.name for v in layer.weights}
        for (w_name, array), variable in zip(weights, layer.weights, strict=True):
            short = _short_weight_name(w_name)
            # Keras 2 and 3 share weight order; a known name in the wrong slot means a bad file.
            if short in model_names and short != variable.name:
                raise ValueError(
                    f"layer {h5_name!r}: file weight {w_name!r} is where the model has "
                    f"{variable.name!r}"
                )
            if tuple(array.shape) != tuple(variable.shape):
                raise ValueError(
                    f"layer {h5_name!r}, weight {variable.name!r}: shape in file "
                    f"{tuple(array.shape)} != shape in model {tuple(variable.shape)}"
                )
        assignments.append((layer, [a for _, a in weights]))
    for layer, arrays in assignments:
        layer.set_weights(arrays)


def default_weights_dir() -> Path:
    """``$FER_STUDY_WEIGHTS`` if set, else ``~/.keras/models``."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env).expanduser() if env else Path.home() / ".keras" / "models"


def vggface_weights_path(arch: str, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of the published no-top weight file for `arch`, checked against its sha256 if known.

    Looks in `weights_dir` (default `default_weights_dir`) and its ``vggface/`` subfolder (where
    keras-vggface itself caches files). Raises `FileNotFoundError` with download instructions.
    """
    info = WEIGHT_FILES[_check_arch(arch)]
    folder = Path(weights_dir).expanduser() if weights_dir is not None else default_weights_dir()
    filename = str(info["filename"])
    candidates = [folder / filename, folder / "vggface" / filename]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        sha = info["sha256"] or "not published (file is not verified)"
        raise FileNotFoundError(
            f"VGGFace {arch} weights not found at {candidates[0]}.\n"
            f"  download: {info['url']}\n"
            f"  expected file name: {filename}\n"
            f"  sha256: {sha}\n"
            f"  put it in {folder} (or set ${WEIGHTS_ENV} to the folder holding it)"
        )
    expected = info["sha256"]
    if expected is not None:
        actual = sha256_file(found)
        if actual != expected:
            raise ValueError(
                f"{found}: sha256 {actual} does not match the expected {expected}; "
                f"re-download it from {info['url']}"
            )
    return found


# --------------------------------------------------------------------------- preprocessing


def vggface_preprocess(x: object, version: int | str = 1) -> object:
    """keras_vggface.utils.preprocess_input for channels-last RGB input in 0..255.

    Flips RGB to BGR and subtracts the per-channel BGR means. `version` is 1 (VGGFace1, vgg16),
    2 (VGGFace2, resnet50/senet50) or an architecture name.
    """
    if isinstance(version, str):
        version = PREPROCESS_VERSION[_check_arch(version)]
    if version not in _BGR_MEANS:
        raise ValueError(f"unknown VGGFace preprocessing version {version!r}; expected 1 or 2")
    x = ops.flip(ops.cast(x, "float32"), axis=-1)
    return x - ops.convert_to_tensor(np.asarray(_BGR_MEANS[version], dtype="float32"))
