"""The real-time benchmark's verdicts and tables, computed from its results: the issue's
targets, the headline the README quotes (default pipeline vs fer) and the report's rows."""

from __future__ import annotations

from typing import Any

from fer_study.benchmarks.scoring import MIN_FACE

DEFAULT = "yunet"  # the package's default detector, as make_pipeline() builds it


def tables(result: dict[str, Any]) -> tuple[list[dict], dict[str, list[dict]]]:
    """Rows for the report: recall and accuracy per system; FPS; the detect_every cost."""
    rec = (result.get("recall") or {}).get("results") or {}
    recall_rows = [{"system": name, "recall >= 32 px": r[f"recall_ge_{MIN_FACE}px"],
                    "recall (all)": r["recall_all"], "false positives": r["false_positives"],
                    "emotion acc. (all faces)": r["emotion_accuracy"]["over_all_faces"],
                    "emotion acc. (found faces)": r["emotion_accuracy"]["over_detected_faces"],
                    "ms/frame (median)": r["ms_per_frame"]["median"]}
                   for name, r in rec.items()]
    fps_rows = [{"scene": r["scene"], "detector": r["detector"], "detect every": r["detect_every"],
                 "faces found (median)": r["ours"]["faces_per_frame_median"],
                 "false detections": r["ours"]["false_detections"],
                 "FPS median": r["ours"]["fps_median"], "FPS mean": r["ours"]["fps_mean"],
                 "fer FPS median": (r.get("fer") or {}).get("fps_median"),
                 "x fer (medians)": r.get("fps_ratio_medians")}
                for r in result.get("runs", [])]
    delay_rows = [{"detect every": d["detect_every"],
                   "new face late by (frames, mean)": d["delay_frames_mean"],
                   "max": d["delay_frames_max"]} for d in result.get("detect_every_tradeoff", [])]
    more = {"FPS, 640x480, 1 thread": fps_rows, "detect_every: how late a new face is found":
            delay_rows}
    return recall_rows, {k: v for k, v in more.items() if v}


def targets(result: dict[str, Any], deployed: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The issue's targets, each computed from this run's numbers, and the headline the
    README quotes (default pipeline vs fer)."""
    clf = result["classifiers_1thread"]["tflite_deployed" if deployed else "tflite_float32"]
    t: dict[str, Any] = {"classifier_le_1ms_per_face_tflite_1thread":
                         clf["1_face_ms"]["median"] <= 1.0}
    head: dict[str, Any] = {"classifier_1face_ms": clf["1_face_ms"]["median"]}
    one = [r for r in result.get("runs", []) if r["scene"] == "one_face_80px"
           and r["detector"] == DEFAULT and r["detect_every"] == 1 and r["threads"] == 1]
    if one and "fer" in one[0]:
        r = one[0]
        t["default_ge_10x_fer_fps_one_face"] = r["fps_ratio_medians"] >= 10
        t["default_finds_the_80px_face"] = r["ours"]["frames_with_all_faces"] >= 0.95 * \
            r["ours"]["frames"]
        head.update(scene="one_face_80px", ours_fps=r["ours"]["fps_median"],
                    fer_fps=r["fer"]["fps_median"], fps_ratio=r["fps_ratio_medians"])
    rec = (result.get("recall") or {}).get("results") or {}
    key = f"recall_ge_{MIN_FACE}px"
    if DEFAULT in rec and "fer" in rec:
        t[f"default_recall_ge_fer_faces_ge_{MIN_FACE}px"] = rec[DEFAULT][key] >= rec["fer"][key]
        head.update(recall_ours=rec[DEFAULT][key], recall_fer=rec["fer"][key],
                    false_positives_ours=rec[DEFAULT]["false_positives"],
                    false_positives_fer=rec["fer"]["false_positives"],
                    e2e_accuracy_ours=rec[DEFAULT]["emotion_accuracy"]["over_all_faces"],
                    e2e_accuracy_fer=rec["fer"]["emotion_accuracy"]["over_all_faces"],
                    e2e_accuracy_detected_ours=rec[DEFAULT]["emotion_accuracy"][
                        "over_detected_faces"],
                    e2e_accuracy_detected_fer=rec["fer"]["emotion_accuracy"][
                        "over_detected_faces"])
    acc = result.get("accuracy") or {}
    if "ours_ge_fer" in acc:
        t["equal_or_better_accuracy_than_fer"] = acc["ours_ge_fer"]
    return t, head
