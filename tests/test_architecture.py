"""The package's layers (ARCHITECTURE.md): imports only go down, and modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fer_study"
# Top-level module (or subpackage) -> layer; a module may import its own layer and below.
# A new module gets a line here and in ARCHITECTURE.md.
LAYERS = {
    # 0 foundation: constants, errors, provenance, the input contract, shared utilities
    **dict.fromkeys(("labels", "errors", "provenance", "assets",
                     "validation", "timing", "model_input"), 0),
    # 1 core: data, models, training, evaluation and analyses of a model
    **dict.fromkeys(("data", "synthetic", "augment", "models", "vggface", "efficientnet_lite",
                     "torch_checkpoint", "evaluate", "train", "run_config", "precision", "distill",
                     "distribute", "tracking", "robustness", "prune", "gradcam", "gradcam_analysis",
                     "gradcam_plots", "plots",
                     "demo_video", "stats", "data_effects", "run_options"), 1),
    # 2 study: results layer, profiles, runner, report, notebook API, leaderboard
    **dict.fromkeys(("results", "markdown", "comparison", "conclusions", "profiles", "plan",
                     "fingerprint", "study", "report", "readme", "citation", "notebook",
                     "leaderboard", "published", "ethics", "data_effects_report",
                     "efficientnet_lite_check", "runs", "throughput", "study_timing"), 2),
    # 3 deployment: TFLite export and runtime, real-time pipeline, serving
    **dict.fromkeys(("tflite", "export", "optimise", "realtime", "serve", "ship", "baselines",
                     "benchmarks"), 3),
    # 4 the command line, which reaches every layer
    # the front door re-exports (EmotionRecognizer) lazily, like the command line
    "cli": 4, "__main__": 4, "__init__": 4,
}
# Modules still above the size target, with the reason.
OVERSIZE: dict[str, str] = {}
MAX_LINES = 520  # "about 500"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield path, path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _fer_study_imports(path: Path) -> set[str]:
    """Every fer_study module `path` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "fer_study":
                out |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names
                    if a.name.startswith("fer_study.")}
    return out


def test_every_module_has_a_layer():
    missing = {name for _, name in _modules()} - set(LAYERS)
    assert not missing, f"give {sorted(missing)} a layer in LAYERS and ARCHITECTURE.md"


def test_imports_only_go_down():
    upward = [f"{name} (layer {LAYERS[name]}) imports {dep} (layer {LAYERS[dep]})"
              for path, name in _modules() for dep in _fer_study_imports(path)
              if dep in LAYERS and LAYERS[dep] > LAYERS.get(name, 0)]
    assert not upward, upward


def test_modules_stay_small():
    big = {str(path.relative_to(PACKAGE)): n for path, _ in _modules()
           if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert set(big) <= set(OVERSIZE), {k: v for k, v in big.items() if k not in OVERSIZE}
