"""Unit tier for metrics, calibration and augmentation helpers."""

from __future__ import annotations

import numpy as np
import pytest

from fer_study.augment import AugmentConfig, FerBatches, augment_image, class_weights
from fer_study.evaluate import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    metrics_from_probs,
    reliability,
)
from fer_study.labels import NUM_CLASSES


def _onehot(idx, n=7, p=1.0):
    out = np.full((len(idx), n), (1 - p) / (n - 1), dtype=np.float32)
    out[np.arange(len(idx)), idx] = p
    return out


def test_metrics_on_known_predictions():
    labels = np.array([0, 0, 1, 1, 3, 3])
    pred = np.array([0, 1, 1, 1, 3, 0])
    probs = _onehot(pred, p=0.7)
    probs[1, 0] = 0.2  # the wrong answer for row 1 has the truth as runner-up
    m = metrics_from_probs(probs, labels)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["top2_accuracy"] == pytest.approx(5 / 6)
    assert m["per_class"]["Disgust"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["Disgust"]["recall"] == pytest.approx(1.0)
    assert m["per_class"]["Fear"]["support"] == 0
    assert m["confusion_matrix"][3] == [1, 0, 0, 1, 0, 0, 0]
    assert m["confusion_matrix_normalised"][0][:2] == [0.5, 0.5]
    with pytest.raises(ValueError, match="equal, non-zero"):
        metrics_from_probs(probs[:3], labels)


def test_ece_of_perfectly_calibrated_and_overconfident():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 5000)
    calibrated = _onehot(labels, p=1.0)
    assert expected_calibration_error(calibrated, labels) == pytest.approx(0.0)
    # always 90% confident but right only half the time -> ECE 0.4
    pred = np.where(rng.random(5000) < 0.5, labels, (labels + 1) % 7)
    over = _onehot(pred, p=0.9)
    assert expected_calibration_error(over, labels) == pytest.approx(0.4, abs=0.03)
    rel = reliability(over, labels)
    assert sum(rel["count"]) == 5000


def test_temperature_scaling_reduces_overconfidence():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 7, 3000)
    pred = np.where(rng.random(3000) < 0.6, labels, rng.integers(0, 7, 3000))
    over = _onehot(pred, p=0.97)
    t = fit_temperature(over, labels)
    assert t > 1.5
    scaled = apply_temperature(over, t)
    assert expected_calibration_error(scaled, labels) < expected_calibration_error(over, labels)
    np.testing.assert_array_equal(scaled.argmax(1), over.argmax(1))


def test_class_weights_balance_rare_classes():
    labels = np.array([0] * 90 + [1] * 10)
    w = class_weights(labels, power=1.0)
    assert w[1] / w[0] == pytest.approx(9.0)
    assert w[labels].mean() == pytest.approx(1.0)
    assert class_weights(labels, power=0.5)[1] / class_weights(labels, power=0.5)[0] == \
        pytest.approx(3.0)


def test_augmentation_shapes_ranges_and_determinism():
    img = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    cfg = AugmentConfig(erase_prob=1.0)
    a = augment_image(img, np.random.default_rng(5), cfg, 44)
    b = augment_image(img, np.random.default_rng(5), cfg, 44)
    assert a.shape == (44, 44) and a.dtype == np.float32
    assert 0 <= a.min() and a.max() <= 255
    np.testing.assert_array_equal(a, b)
    still = augment_image(img, np.random.default_rng(5), AugmentConfig(
        flip=False, rotation=0, shift=0, zoom=0, brightness=0, contrast=0, erase_prob=0), 48)
    np.testing.assert_allclose(still, img, atol=1e-3)


def test_batches_targets_mixup_and_soft_labels():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 48, 48), dtype=np.uint8)
    labels = np.arange(20) % 7
    soft = np.full((20, 7), 1 / 7, dtype=np.float32)
    plain = FerBatches(images, labels, 8, 48)
    x, y, w = plain[0]
    assert x.shape == (8, 48, 48, 1) and y.shape == (8, 7) and w.shape == (8,)
    np.testing.assert_array_equal(y.argmax(1), labels[:8])
    assert len(plain) == 3
    blended = FerBatches(images, labels, 8, 48, soft=soft, soft_weight=0.5)
    np.testing.assert_allclose(blended[0][1].max(1), 0.5 + 0.5 / 7, rtol=1e-6)
    mixed = FerBatches(images, labels, 8, 44, augment=AugmentConfig(mixup_alpha=0.4),
                       shuffle=True)
    xm, ym, _ = mixed[0]
    assert xm.shape == (8, 44, 44, 1)
    np.testing.assert_allclose(ym.sum(1), 1.0, rtol=1e-6)
    # shuffling is seeded per epoch: reproducible, and different between epochs
    again = FerBatches(images, labels, 8, 44, augment=AugmentConfig(), shuffle=True)
    order0 = again.order.copy()
    again.on_epoch_end()
    assert not np.array_equal(order0, again.order)
    again.set_epoch(1)  # the epoch the constructor starts in
    np.testing.assert_array_equal(order0, again.order)


def test_calibration_report_fits_on_the_selection_split():
    from fer_study.evaluate import calibration_report
    from fer_study.plots import reliability_diagram

    rng = np.random.default_rng(0)
    y = rng.integers(0, NUM_CLASSES, 600)
    # Overconfident: right 60% of the time but always ~97% sure.
    pred = np.where(rng.random(600) < 0.6, y, (y + 1) % NUM_CLASSES)
    probs = np.full((600, NUM_CLASSES), 0.005, np.float32)
    probs[np.arange(600), pred] = 0.97
    rep = calibration_report(probs[:300], y[:300], probs[300:], y[300:])
    assert rep["temperature"] > 1.0 and rep["ece_after"] < rep["ece_before"] / 2
    assert rep["nll_after"] < rep["nll_before"] and rep["n_report"] == 300
    assert rep["fit_split"] == "PublicTest" and rep["report_split"] == "PrivateTest"
    with pytest.raises(ValueError, match="another split"):
        calibration_report(probs, y, probs, y, fit_split="PrivateTest")
    fig = reliability_diagram(rep)
    assert len(fig.axes) == 2


def test_temperature_report_applies_a_given_temperature():
    """The shipped model's T (fitted at shipping) is applied, not refitted, on a report split."""
    from fer_study.evaluate import apply_temperature, calibration_report, temperature_report

    rng = np.random.default_rng(1)
    y = rng.integers(0, NUM_CLASSES, 400)
    pred = np.where(rng.random(400) < 0.6, y, (y + 1) % NUM_CLASSES)
    probs = np.full((400, NUM_CLASSES), 0.005, np.float32)
    probs[np.arange(400), pred] = 0.97
    same = temperature_report(probs, y, 1.0, fit_split="shipped")
    assert same["ece_after"] == pytest.approx(same["ece_before"], abs=1e-6)
    assert same["fit_split"] == "shipped" and same["n_fit"] is None
    fitted = calibration_report(probs[:200], y[:200], probs[200:], y[200:])
    given = temperature_report(probs[200:], y[200:], fitted["temperature"])
    assert given["ece_after"] == pytest.approx(fitted["ece_after"])
    assert given["mean_confidence_after"] == pytest.approx(
        float(apply_temperature(probs[200:], fitted["temperature"]).max(axis=1).mean()))
