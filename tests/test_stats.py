"""Bootstrap intervals, paired comparisons and McNemar's test."""

from __future__ import annotations

import numpy as np
import pytest

from fer_study.stats import bootstrap_ci, bootstrap_mean_ci, mcnemar, paired_bootstrap, verdict


def test_bootstrap_interval_brackets_the_value_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 4000)
    p = np.where(rng.random(4000) < 0.7, y, (y + 1) % 7)
    small = bootstrap_ci(y[:400], p[:400])
    big = bootstrap_ci(y, p)
    assert small["low"] < small["value"] < small["high"]
    assert big["high"] - big["low"] < small["high"] - small["low"]
    # ~ the normal approximation: 1.96 * sqrt(0.7 * 0.3 / 4000) = 0.0142
    assert (big["high"] - big["low"]) / 2 == pytest.approx(0.0142, abs=0.003)
    f1 = bootstrap_ci(y[:300], p[:300], "macro_f1", n_boot=100)
    assert f1["low"] <= f1["value"] <= f1["high"]
    with pytest.raises(ValueError):
        bootstrap_ci(y, p[:-1])
    with pytest.raises(ValueError):
        bootstrap_ci(y, p, "auc")


def test_mcnemar_counts_discordant_faces_and_calls_ties():
    y = np.zeros(100, int)
    a = np.zeros(100, int)
    b = np.zeros(100, int)
    b[:30] = 1  # b wrong on 30 faces a gets right
    t = mcnemar(y, a, b)
    assert (t["only_a_right"], t["only_b_right"]) == (30, 0)
    assert t["p_value"] < 1e-8 and verdict(t["p_value"]) == "differ"
    b2 = b.copy()
    a2 = a.copy()
    a2[30:33] = 1  # a wrong on 3 faces b gets right: 30 vs 3 still differ; 3 vs 2 is a tie
    assert mcnemar(y, a2, b2)["p_value"] < 0.001
    c = np.zeros(100, int)
    c[:2] = 1
    d = np.zeros(100, int)
    d[2:5] = 1
    assert verdict(mcnemar(y, c, d)["p_value"]).startswith("tie")
    assert mcnemar(y, a, a)["p_value"] == 1.0


def test_paired_bootstrap_difference_sign():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, 2000)
    good = np.where(rng.random(2000) < 0.8, y, (y + 1) % 7)
    bad = np.where(rng.random(2000) < 0.6, y, (y + 1) % 7)
    d = paired_bootstrap(y, good, bad)
    assert d["low"] > 0 and d["difference"] == pytest.approx(
        (good == y).mean() - (bad == y).mean())


def test_bootstrap_mean_interval_matches_the_standard_error():
    rng = np.random.default_rng(1)
    v = rng.normal(0.3, 1.0, 2000)
    ci = bootstrap_mean_ci(v)
    assert ci["low"] < ci["value"] < ci["high"] and ci["value"] == pytest.approx(v.mean())
    # ~ the normal approximation: 1.96 * 1 / sqrt(2000) = 0.0438
    assert (ci["high"] - ci["low"]) / 2 == pytest.approx(0.0438, abs=0.006)
    assert bootstrap_mean_ci(v, seed=3) != ci  # the resamples follow the seed
    with pytest.raises(ValueError):
        bootstrap_mean_ci(np.array([0.1, np.nan]))
