"""TFLite export (float32, dynamic, int8) and the TFLite runtime wrapper."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fer_study import export  # noqa: E402
from fer_study.export import (  # noqa: E402
    ExportError,
    TFLiteClassifier,
    add_export_subcommand,
    as_model_input,
    export_tflite,
)
from fer_study.labels import NUM_CLASSES  # noqa: E402


def tiny_model(size: int = 48, batch_size: int | None = None):
    """A small model of the project contract with peaked (not uniform) softmax outputs."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, 1), batch_size=batch_size)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    # Large output weights make the classes well separated, so top-1 is a fair comparison.
    init = keras.initializers.RandomNormal(stddev=2.0, seed=1)
    out = keras.layers.Dense(NUM_CLASSES, activation="softmax", kernel_initializer=init)(x)
    return keras.Model(inp, out, name="tiny")


def face_like_images(n: int, size: int = 48, seed: int = 0) -> np.ndarray:
    """Varied uint8 images: smooth blobs and gradients plus noise, like faces are not."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    imgs = []
    for _ in range(n):
        cx, cy, s = rng.uniform(0.2, 0.8, 3)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.05 + 0.2 * s))
        grad = rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy
        img = 128 + 90 * blob * rng.choice([-1, 1]) + 40 * grad + rng.normal(0, 12, (size, size))
        imgs.append(np.clip(img, 0, 255))
    return np.asarray(imgs, np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_model()
    out = tmp_path_factory.mktemp("export")
    rep = face_like_images(100, seed=1)
    check = face_like_images(300, seed=2)
    report = export_tflite(model, out, representative=rep, check=check, name="tiny")
    return model, out, report, check


def test_writes_every_variant_and_the_report(exported):
    _, out, report, _ = exported
    assert set(report["variants"]) == {"float32", "dynamic", "int8"}
    for variant, entry in report["variants"].items():
        path = out / f"tiny_{variant}.tflite"
        assert path.is_file() and path.stat().st_size == entry["size_bytes"] > 0
        assert entry["latency_ms_1face_1thread"] > 0
    on_disk = json.loads((out / "export_report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert report["check_images"] == 300 and report["representative_images"] == 100


def test_float32_agrees_with_keras(exported):
    f32 = exported[2]["variants"]["float32"]
    assert f32["top1_agreement"] >= 0.99
    assert f32["max_abs_prob_diff"] < 1e-3


def test_quantised_variants_are_reported_and_close(exported):
    variants = exported[2]["variants"]
    for name in ("dynamic", "int8"):
        v = variants[name]
        assert 0.0 <= v["top1_agreement"] <= 1.0
        assert 0.0 <= v["mean_abs_prob_diff"] <= v["max_abs_prob_diff"] <= 1.0
    # Full-integer quantisation of a well-separated model keeps most decisions.
    assert variants["int8"]["top1_agreement"] >= 0.8


def test_int8_is_really_integer_inside_with_float_io(exported):
    from fer_study.tflite import make_interpreter

    interp = make_interpreter(exported[1] / "tiny_int8.tflite")
    interp.allocate_tensors()
    assert interp.get_input_details()[0]["dtype"] == np.float32
    assert interp.get_output_details()[0]["dtype"] == np.float32
    dtypes = {d["dtype"] for d in interp.get_tensor_details()}
    assert np.int8 in dtypes
    f32 = make_interpreter(exported[1] / "tiny_float32.tflite")
    f32.allocate_tensors()
    assert np.int8 not in {d["dtype"] for d in f32.get_tensor_details()}


def test_classifier_batches_match_single_faces(exported):
    model, out, _, check = exported
    clf = TFLiteClassifier(out / "tiny_float32.tflite", num_threads=1, max_batch=4)
    assert clf.input_size == 48
    x = as_model_input(check[:10], 48)
    batched = clf.predict(x)  # 10 faces with max_batch 4: chunks of 4, 4, 2
    singles = np.concatenate([clf.predict(x[i : i + 1]) for i in range(10)])
    assert batched.shape == (10, NUM_CLASSES) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, singles, atol=1e-5)
    np.testing.assert_allclose(batched.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batched, np.asarray(model(x)), atol=1e-4)
    assert clf.predict(np.zeros((0, 48, 48, 1), np.float32)).shape == (0, NUM_CLASSES)
    assert clf.predict(x[:3, ..., 0]).shape == (3, NUM_CLASSES)  # (N, S, S) accepted too


def test_classifier_errors(tmp_path):
    with pytest.raises(ExportError, match="not found"):
        TFLiteClassifier(tmp_path / "missing.tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(ExportError, match="cannot load"):
        TFLiteClassifier(bad)


def test_export_from_file_resizes_inputs_and_names_after_stem(tmp_path):
    model = tiny_model(size=40)
    path = tmp_path / "small40.keras"
    model.save(path)
    report = export_tflite(path, tmp_path / "o", variants=("float32",), check=face_like_images(20))
    assert report["input_size"] == 40
    assert (tmp_path / "o" / "small40_float32.tflite").is_file()
    assert report["variants"]["float32"]["top1_agreement"] >= 0.95
    assert TFLiteClassifier(tmp_path / "o" / "small40_float32.tflite").input_size == 40


def test_export_argument_errors(tmp_path):
    model = tiny_model()
    with pytest.raises(ExportError, match="representative"):
        export_tflite(model, tmp_path, variants=("int8",))
    with pytest.raises(ExportError, match="unknown variants"):
        export_tflite(model, tmp_path, variants=("float16",))
    with pytest.raises(ExportError, match="not found"):
        export_tflite(tmp_path / "nope.keras", tmp_path, variants=("float32",))


def test_default_model_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(export, "DEFAULT_TFLITE_MODEL", tmp_path / "default_model.tflite")
    with pytest.raises(ExportError, match="--model"):
        export.default_model_path("tflite")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_export_subcommand(parser.add_subparsers(dest="cmd"))
    return parser.parse_args(argv)


def test_cli_export_with_npz(tmp_path, capsys):
    model_path = tmp_path / "m.keras"
    tiny_model().save(model_path)
    data = tmp_path / "fer.npz"
    usage = np.array(["Training"] * 60 + ["PublicTest"] * 40)
    np.savez(data, images=face_like_images(100), labels=np.zeros(100, np.int8), usage=usage)
    args = _parse(
        ["export", "--model", str(model_path), "--out-dir", str(tmp_path / "x"),
         "--variants", "float32,int8", "--data", str(data), "--check", "40"]
    )  # fmt: skip
    assert args.func(args) == 0
    report = json.loads((tmp_path / "x" / "export_report.json").read_text())
    assert set(report["variants"]) == {"float32", "int8"}
    assert report["check_images"] == 40 and report["representative_images"] == 60
    assert "agreement" in capsys.readouterr().out


def test_cli_export_errors_exit_2(tmp_path, capsys):
    args = _parse(["export", "--model", str(tmp_path / "missing.keras")])
    assert args.func(args) == 2
    assert "model file not found" in capsys.readouterr().err
    # the positional form of the issue's `export MODEL --format tflite` names the same file
    args = _parse(["export", str(tmp_path / "other.keras"), "--format", "tflite"])
    assert args.func(args) == 2
    assert "other.keras" in capsys.readouterr().err
    model_path = tmp_path / "m.keras"
    tiny_model().save(model_path)
    args = _parse(["export", "--model", str(model_path), "--out-dir", str(tmp_path)])
    assert args.func(args) == 2  # int8 requested (default) but no --data to calibrate on
    assert "representative" in capsys.readouterr().err


def test_tf_lite_interpreter_fallback_gives_the_same_answers(exported, monkeypatch):
    import sys

    _, out, _, check = exported
    x = as_model_input(check[:5], 48)
    litert = TFLiteClassifier(out / "tiny_int8.tflite").predict(x)
    # Without the LiteRT package the deprecated but working tf.lite.Interpreter is used.
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    fallback = TFLiteClassifier(out / "tiny_int8.tflite")
    assert type(fallback._interp).__module__.startswith("tensorflow")
    np.testing.assert_allclose(fallback.predict(x), litert, atol=1e-6)


def test_face_splits_from_npz_and_project_loaders(tmp_path):
    from fer_study.export import load_face_splits

    data = tmp_path / "fer.npz"
    usage = np.array(["Training"] * 6 + ["PublicTest"] * 3 + ["PrivateTest"] * 2)
    np.savez(data, images=np.arange(11, dtype=np.uint8)[:, None, None] * np.ones((1, 48, 48)))
    train, test = load_face_splits(data)  # no usage array: every image serves both
    assert len(train) == len(test) == 11
    np.savez(data, images=face_like_images(11), usage=usage)
    train, test = load_face_splits(data)
    assert len(train) == 6 and len(test) == 3
    with pytest.raises(ExportError, match="not found"):
        load_face_splits(tmp_path / "missing.npz")
    with pytest.raises(ExportError, match="not found"):
        load_face_splits(tmp_path / "missing.csv")


def test_classifier_handles_a_fixed_batch_model(exported, tmp_path):
    model, _, _, check = exported
    fixed = tiny_model(batch_size=2)  # the same weights, batch fixed at 2 in the graph
    fixed.set_weights(model.get_weights())
    report = export_tflite(fixed, tmp_path, variants=("float32",), name="fixed2")
    clf = TFLiteClassifier(report["variants"]["float32"]["path"])
    assert not clf._resizable
    x = as_model_input(check[:5], 48)
    got = clf.predict(x)  # chunks of 2, 2 and a padded 1
    assert got.shape == (5, NUM_CLASSES)
    np.testing.assert_allclose(got, np.asarray(model(x)), atol=1e-4)


def test_ensemble_with_flip_inside_exports_and_agrees(tmp_path):
    from fer_study.models import deployment_model

    ens = deployment_model([tiny_model(size=44), tiny_model(size=44)], flip=True)
    report = export_tflite(ens, tmp_path, variants=("float32",), check=face_like_images(20),
                           name="ens")
    assert report["variants"]["float32"]["top1_agreement"] == 1.0
    clf = TFLiteClassifier(tmp_path / "ens_float32.tflite")
    x = face_like_images(3)
    want = ens.predict(as_model_input(x, 44)[..., None].astype("float32"), verbose=0)
    np.testing.assert_allclose(clf.predict(as_model_input(x, 44)), want, atol=1e-4)


def test_a_model_trained_under_bf16_exports_as_float32(tmp_path):
    """`precision="auto"` trains in bf16 on AVX512-BF16/AMX CPUs; the converter cannot lower
    bf16 convolutions, so the exporter computes in float32 (CI failed here on such a CPU)."""
    from fer_study.models import build_model
    from fer_study.precision import dtype_policy

    with dtype_policy("mixed_bfloat16"):
        model = build_model("vgg_style", width=4, input_size=44)
    assert model.layers[1].dtype_policy.name == "mixed_bfloat16"
    report = export_tflite(model, tmp_path, variants=("float32",), check=face_like_images(20))
    assert report["variants"]["float32"]["top1_agreement"] >= 0.9  # bf16 Keras vs f32 file


def test_export_is_inference_mode_for_nested_dropout(tmp_path):
    """EfficientNet-Lite0's drop-connect Dropout sits inside a nested backbone; a SavedModel
    traced without training=False kept its random ops, which TFLite cannot run."""
    from fer_study.models import build_model

    model = build_model("efficientnet_lite0", backbone_size=32, weights=None)
    report = export_tflite(model, tmp_path, variants=("float32",))
    x = as_model_input(face_like_images(4), 48)
    got = TFLiteClassifier(report["variants"]["float32"]["path"]).predict(x)
    np.testing.assert_allclose(got, np.asarray(model(x, training=False)), atol=1e-4)
    np.testing.assert_allclose(got, TFLiteClassifier(report["variants"]["float32"]["path"])
                               .predict(x), atol=0)  # deterministic: no dropout noise


def test_tflite_benchmark_compares_each_export_with_keras(tmp_path):
    from fer_study.export import tflite_benchmark
    from fer_study.synthetic import make_synthetic

    x, y = make_synthetic(24, seed=3)
    path = tmp_path / "tiny.keras"
    tiny_model().save(path)
    df = tflite_benchmark(path, tmp_path / "tfl", x, y, representative=x,
                          variants=["float32"], keras_latency_ms=False)
    assert list(df["format"]) == ["keras", "tflite float32"]
    row = df.iloc[1]
    assert row["agreement"] == 1.0 and row["mean_abs_prob_diff"] < 1e-4
    assert row["accuracy"] == df.iloc[0]["accuracy"] and row["latency_ms"] > 0
    assert (tmp_path / "tfl" / "tiny_float32.tflite").is_file()
