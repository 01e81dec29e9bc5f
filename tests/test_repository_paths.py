"""No committed text file names an absolute path of the machine that made it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".json", ".md", ".html", ".ipynb", ".py", ".cff", ".yml", ".yaml", ".toml",
            ".txt", ".cfg", ".sh"}
# An absolute path under a machine's home, scratch or work folders: the folder must start
# the path (after a quote, space, bracket, '=' or ':'), so URLs such as
# https://host/home/... do not count.
MACHINE_PATH = re.compile(r"(?:^|[\s\"'`(\[=:,])(/(?:" + "|".join(
    ("work", "tmp", "root", "home", "Users", "mnt")) + r")/[^\s\"'`)\],]*)")


def machine_paths(text: str) -> list[str]:
    return [m.group(1) for m in MACHINE_PATH.finditer(text)]


def test_the_pattern_finds_machine_paths_and_ignores_urls():
    found = machine_paths('{"path": "/work/another-clone/data/fer2013.csv"}\nsaved to /tmp/x.png '
                          "cwd=/home/me/fc (/root/.keras/models/w.h5)")
    assert found == ["/work/another-clone/data/fer2013.csv", "/tmp/x.png", "/home/me/fc",
                     "/root/.keras/models/w.h5"]
    assert machine_paths("https://github.com/home/tmp/x and data/fer2013.csv and ~/.cache") \
        == []


def test_no_committed_file_names_a_machine_path():
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no list of committed files to scan")
    offenders = {}
    for name in filter(None, listed):
        path = ROOT / name
        if path.suffix not in SUFFIXES or not path.is_file() or path == Path(__file__):
            continue
        hits = machine_paths(path.read_text(errors="replace"))
        if hits:
            offenders[name] = sorted(set(hits))[:3]
    assert not offenders, ("absolute paths of a machine in committed files (fix the code that "
                           f"wrote them, then regenerate): {offenders}")


def test_json_the_package_writes_names_repository_files_relative(tmp_path):
    """The guard behind the scan: whatever a notebook or command passes (the study resolves
    data and run folders to absolute paths), write_json stores repository paths relative."""
    from fer_study.provenance import REPO_ROOT, write_json

    out = write_json(tmp_path / "r.json", {
        "data": str(REPO_ROOT / "data" / "fer2013.csv"), "runs": [REPO_ROOT / "runs" / "x"],
        "nested": {"path": f"{REPO_ROOT}/reports/results/a.json"},
        "outside": "/elsewhere/fer2013.csv", "text": "made from data/fer2013.csv"})
    d = json.loads(out.read_text())
    assert d == {"data": "data/fer2013.csv", "runs": ["runs/x"],
                 "nested": {"path": "reports/results/a.json"},
                 "outside": "/elsewhere/fer2013.csv", "text": "made from data/fer2013.csv"}


def test_executed_notebooks_lose_the_machine_paths_their_outputs_print(tmp_path):
    """Warnings, tracebacks and printed run folders name absolute paths; the executed
    copies are committed, so the runner scrubs them (repository, home, temporary files)."""
    import nbformat

    from fer_study.provenance import REPO_ROOT
    from fer_study.study import scrub_notebook

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)")
    cell.outputs = [
        nbformat.v4.new_output("stream", text=f"model run: {REPO_ROOT}/runs/x\n"),
        nbformat.v4.new_output("stream", name="stderr",
                               text=f"{Path.home()}/.keras/models/w.h5 missing; "
                                    "Saved artifact at /tmp/fer_study_export_ab1/saved_model\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": f"'{REPO_ROOT}'"}),
        nbformat.v4.new_output("error", ename="E", evalue="bad",
                               traceback=[f"File {REPO_ROOT}/fer_study/models.py:1"])]
    nb.cells = [cell]
    f = tmp_path / "n.ipynb"
    nbformat.write(nb, str(f))
    scrub_notebook(f)
    text = f.read_text()
    assert str(REPO_ROOT) not in text and "/tmp/fer_study_export" not in text
    assert "model run: runs/x" in text and "~/.keras/models/w.h5" in text
    assert "Saved artifact at <tmp>" in text and "File fer_study/models.py:1" in text
