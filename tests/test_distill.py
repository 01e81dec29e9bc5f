"""Distillation (teacher probabilities into a student's targets) and training precision."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from fer_study import precision
from fer_study.augment import FerBatches
from fer_study.cli import main
from fer_study.data import DataError, load_synthetic, train_val_test
from fer_study.distill import attach_teacher, read_teacher, soften
from fer_study.train import RunConfig, train

SIZES = {"Training": 280, "PublicTest": 70, "PrivateTest": 70}
TINY = {"model": "vgg_style", "data": "synthetic", "synthetic_sizes": SIZES, "epochs": 1,
        "batch_size": 32, "model_kwargs": {"width": 4, "blocks": 2}, "verbose": 0,
        "patience": 0, "tta": "none", "precision": "float32"}


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "teacher"
    train(RunConfig(**TINY, run_dir=str(run_dir)))
    return run_dir


def test_teacher_file_and_student_targets(teacher_run, tmp_path, capsys):
    out = tmp_path / "teacher.npz"
    assert main(["teacher", str(teacher_run), "--data", "synthetic", "--output", str(out),
                 "--tta", "none"]) == 0
    t = read_teacher(out)
    fit = train_val_test(load_synthetic())[0]
    assert t["probs"].shape == (len(fit), 7) and t["split"] == "Training"
    np.testing.assert_allclose(t["probs"].sum(1), 1.0, atol=1e-4)
    assert "Training" in capsys.readouterr().out
    # The student's targets are the blend of one-hot labels and the teacher's distribution.
    fit = attach_teacher(fit, out)
    b = FerBatches(fit.images, fit.labels, 16, 48, teacher=fit.teacher_probs,
                   teacher_weight=0.25)
    onehot = np.eye(7, dtype=np.float32)[fit.labels]
    np.testing.assert_allclose(b.targets, 0.75 * onehot + 0.25 * t["probs"], atol=1e-6)


def test_student_run_records_its_teacher(teacher_run, tmp_path):
    """Default synthetic sizes differ from the teacher's, so build the teacher on the
    student's own data; the run's metrics name the teacher and its weight."""
    student_data = {**TINY}
    out = tmp_path / "t.npz"
    from fer_study.distill import teacher_probabilities, write_teacher

    ds = load_synthetic(sizes=SIZES)
    write_teacher(out, teacher_probabilities([str(teacher_run)], "synthetic", tta="none",
                                             dataset=ds))
    cfg = RunConfig(**student_data, teacher=str(out), teacher_weight=0.5,
                    teacher_temperature=2.0, run_dir=str(tmp_path / "student"))
    m = train(cfg).metrics
    assert m["teacher"] == {"file": str(out), "members": [str(teacher_run)], "tta": "none",
                            "weight": 0.5, "temperature": 2.0}


def test_teacher_on_other_images_is_refused(teacher_run, tmp_path):
    from fer_study.distill import teacher_probabilities, write_teacher

    out = tmp_path / "t.npz"
    write_teacher(out, teacher_probabilities([str(teacher_run)], "synthetic", tta="none",
                                             dataset=load_synthetic(sizes=SIZES)))
    other = train_val_test(load_synthetic(sizes={**SIZES, "Training": 140}))[0]
    with pytest.raises(DataError, match="other images"):
        attach_teacher(other, out)


def test_soften_flattens_and_keeps_the_argmax():
    p = np.array([[0.7, 0.2, 0.1, 0, 0, 0, 0]], np.float32)
    s = soften(p, 3.0)
    assert s.argmax() == 0 and s.max() < 0.7 and s.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(soften(p, 1.0), p)
    with pytest.raises(ValueError):
        soften(p, 0.0)


def test_auto_precision_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(precision, "has_accelerator", lambda: False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert precision.resolve_precision("auto") == "float32"
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert precision.resolve_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"amx_bf16"})
    assert precision.resolve_precision("auto") == "mixed_bfloat16"
    assert precision.resolve_precision("float32") == "float32"
    with pytest.raises(ValueError, match="precision"):
        precision.resolve_precision("fp8")


def test_bf16_run_keeps_float32_probabilities_and_restores_the_policy(tmp_path):
    cfg = RunConfig(**{**TINY, "precision": "mixed_bfloat16"}, run_dir=str(tmp_path / "bf16"))
    result = train(cfg)
    assert keras.config.dtype_policy().name == "float32"
    assert result.metrics["precision"] == "mixed_bfloat16"
    model = result.model
    assert model.get_layer("probs").dtype_policy.compute_dtype == "float32"
    assert model.layers[2].dtype_policy.compute_dtype == "bfloat16"  # the first conv
    out = model(np.zeros((2, 48, 48, 1), np.float32))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    state = json.loads((tmp_path / "bf16" / "state.json").read_text())
    assert state["precision"] == "mixed_bfloat16"
