"""Conclusions are computed from the results files, call ties ties, and leave out what is
not measured."""

from __future__ import annotations

from fer_study.conclusions import conclusions, conclusions_section


def _row(model, kind, acc, f1=0.4):
    return {"model": model, "kind": kind, "status": "ok", "PublicTest acc": acc,
            "PrivateTest acc": acc, "PublicTest macro-F1": f1, "PrivateTest macro-F1": f1,
            "pretrained weights": "imagenet" if kind == "transfer" else "none (random init)"}


def test_a_longer_trained_scratch_cnn_beating_the_transfer_model_is_said_plainly():
    comp = {"summary_table": [_row("vgg_style_w32_s0", "scratch", 0.70),
                              _row("efficientnet_lite0", "transfer", 0.37),
                              _row("efficientnet_lite0_scratch", "scratch", 0.25, f1=0.05)],
            "not_run": [{"model": "vgg16", "status": "not run: weights unavailable"}]}
    text = " ".join(conclusions({"04_model_comparison": comp}))
    assert "transfer learning lost" in text and "by 33.0 points" in text
    assert "the scratch twin did not learn" in text and "no pretraining gain" in text
    assert "`vgg16`" in text


def test_ablation_rows_are_ties_or_differences_as_their_tests_say():
    abl = {"reference": "ref", "reference_tests": [
        {"run": "ref", "TTA": "none", "PrivateTest diff vs reference (points)": 0.0},
        {"run": "vgg_style_w16_e30_ablate_no_crop_s0", "TTA": "none",
         "PrivateTest diff vs reference (points)": -0.4, "PrivateTest diff 95% CI": [-1.2, 0.5],
         "verdict": "tie (no significant difference)"},
        {"run": "ref", "TTA": "tencrop", "PrivateTest diff vs reference (points)": 1.9,
         "PrivateTest diff 95% CI": [1.1, 2.7], "verdict": "differ"}]}
    abl["reference"] = "vgg_style_w16_e30_float32_s0"
    for r in abl["reference_tests"]:
        r["run"] = r["run"].replace("ref", abl["reference"])
    abl["reference_tests"].append(
        {"run": "vgg_style_w16_e30_ablate_no_augmentation_s0", "TTA": "none",
         "PrivateTest diff vs reference (points)": 2.5, "PrivateTest diff 95% CI": [1.4, 3.6],
         "verdict": "differ"})
    abl["reference_tests"].append(
        {"run": "vgg_style_w16_e30_float32_s1", "TTA": "none",
         "PrivateTest diff vs reference (points)": -0.4, "PrivateTest diff 95% CI": [-1.4, 0.7],
         "verdict": "tie (no significant difference)"})
    abl["reference_tests"].append(
        {"run": "vgg_style_w16_e30_nonfacesdropped_s0", "TTA": "none",
         "PrivateTest diff vs reference (points)": 0.2, "PrivateTest diff 95% CI": [-0.8, 1.2],
         "verdict": "tie (no significant difference)"})
    line, negative = conclusions({"ablation": abl})
    assert "`drop FER+ non-faces` +0.2 points [-0.8, +1.2]: a tie" in line
    assert "another seed (`vgg_style_w16_e30_float32_s1`, the seed noise) -0.4" in line
    assert "`no crop` -0.4 points [-1.2, +0.5]: a tie" in line
    assert "TTA `tencrop` +1.9 points [+1.1, +2.7]: differs" in line
    assert "`no augmentation` +2.5 points [+1.4, +3.6]: differs" in line
    assert negative.startswith("Negative finding: at this budget `no augmentation` scored")


def test_nothing_is_concluded_from_missing_or_synthetic_results():
    assert conclusions({}) == []
    assert conclusions_section({"ablation": {"reference_tests": []}}, synthetic=False) == []
    comp = {"summary_table": [_row("a", "scratch", 0.5), _row("b", "transfer", 0.4)]}
    assert conclusions_section({"04_model_comparison": comp}, synthetic=True) == []
    assert conclusions_section({"04_model_comparison": comp}, synthetic=False)[0] == \
        "## Conclusions"
