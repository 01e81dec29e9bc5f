"""The comparison rows: committed runs beside the study's, and what a pretrained-vs-scratch
pair may claim."""

from __future__ import annotations

from fer_study.comparison import committed_run_result, pretrained_vs_scratch


def _row(model, kind, acc, f1):
    return {"model": model, "kind": kind, "status": "ok", "PublicTest acc": acc,
            "PrivateTest acc": acc, "PublicTest macro-F1": f1, "PrivateTest macro-F1": f1,
            "pretrained weights": "imagenet" if kind == "transfer" else "none (random init)"}


def test_a_twin_that_answers_one_class_measures_no_pretraining_gain():
    pre = _row("efficientnet_lite0", "transfer", 0.4687, 0.363)
    failed = _row("efficientnet_lite0_scratch", "scratch", 0.2449, 0.056)
    (pair,) = pretrained_vs_scratch([pre, failed])
    assert pair["PrivateTest difference (points)"] == 22.38
    assert pair["verdict"].startswith("not measured: the scratch twin did not learn")


def test_a_learned_twin_gives_a_gain_or_a_tie():
    pre = _row("efficientnet_lite0", "transfer", 0.47, 0.36)
    assert "helped by 7.0 points" in pretrained_vs_scratch(
        [pre, _row("efficientnet_lite0_scratch", "scratch", 0.40, 0.30)])[0]["verdict"]
    assert pretrained_vs_scratch(
        [pre, _row("efficientnet_lite0_scratch", "scratch", 0.465, 0.35)])[0][
        "verdict"].startswith("a tie")


def test_a_committed_run_is_named_for_its_folder():
    metrics = {"model": "vgg_style", "kind": "scratch", "pretrained_weights": None,
               "protocol": {"fit": "Training", "select": "PublicTest", "report": "PrivateTest"},
               "splits": {s: {"none": {"accuracy": 0.7, "macro_f1": 0.68}}
                          for s in ("Training", "PublicTest", "PrivateTest")},
               "params": {"total": 10}, "model_bytes": 1e6, "train_seconds": 60.0,
               "epochs_run": 2, "best_epoch": 2, "config": {"input_size": 44},
               "data": {"split_sizes": {}}}
    r = committed_run_result("runs/vgg_style_w32_s0", metrics)
    assert r["summary"]["model"] == r["methods"]["model"] == "vgg_style_w32_s0"
    assert r["command"] == "make runs NAMES=vgg_style_w32_s0"
    assert r["summary"]["PrivateTest acc"] == 0.7
