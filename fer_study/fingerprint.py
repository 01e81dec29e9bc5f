"""Fingerprints that decide whether a study stage is up to date.

``{reports_dir}/results/study_manifest.json`` records, per stage, a fingerprint of the
notebook file, the package's code and assets, its injected parameters, the data's identity
(file sha256, or 'synthetic' + sizes + seed) and the results files it reads (04 reads 02/03,
05-07 read 04). A stage whose fingerprint is unchanged since it last succeeded is skipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from fer_study.errors import DataError
from fer_study.plan import Stage

PACKAGE_DIR = Path(__file__).resolve().parent


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def data_identity(data: str, ferplus: str | None = None,
                  synthetic_sizes: Mapping | None = None, seed: int = 0) -> dict:
    """What identifies the data: a file's sha256, a folder listing's hash, or the synthetic
    set's sizes and seed. Raises DataError for a path that does not exist."""
    from fer_study.data import SYNTHETIC_DEFAULT_SIZES, sha256_file

    if str(data) == "synthetic":
        ident = {"kind": "synthetic", "sizes": {**SYNTHETIC_DEFAULT_SIZES,
                                                **(synthetic_sizes or {})}, "seed": seed}
    else:
        p = Path(data).expanduser()
        if p.is_file():
            ident = {"kind": "file", "name": p.name, "sha256": sha256_file(p)}
        elif p.is_dir():  # image folders: hashing every image is slow; a listing is enough
            h = hashlib.sha256()
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    st = f.stat()
                    h.update(f"{f.relative_to(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            ident = {"kind": "folder", "name": p.name, "listing_sha256": h.hexdigest()}
        else:
            raise DataError(f"data not found: {p}. Give 'synthetic', a fer2013.csv path or a "
                            f"folder with train/ and test/; see data/README.md.")
    if ferplus:
        fp = Path(ferplus).expanduser()
        if not fp.is_file():
            raise DataError(f"FER+ csv not found: {fp}")
        ident["ferplus_sha256"] = sha256_file(fp)
    return ident


def _file_sha(path: Path) -> str:
    return sha256_bytes(path.read_bytes()) if path.is_file() else "missing"


def notebook_sha256(path: Path) -> str:
    """Hash of what a notebook *does*: its cells' types, sources and tags, and its kernel.
    Outputs, execution counts, cell ids and other metadata (which Jupyter rewrites on every
    save) do not count, so opening and saving a notebook does not re-run its stage."""
    if not path.is_file():
        return "missing"
    nb = json.loads(path.read_text())
    cells = [[c.get("cell_type"), "".join(c.get("source", [])),
              sorted(c.get("metadata", {}).get("tags", []))] for c in nb.get("cells", [])]
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    return sha256_bytes(json.dumps([kernel, cells]).encode())


def code_sha256(package: Path = PACKAGE_DIR) -> str:
    """Hash of the package's code and shipped assets (file names and bytes; caches left out):
    a stage re-runs after any change to the code it calls, with no --force needed."""
    h = hashlib.sha256()
    for f in sorted(package.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
            h.update(f"{f.relative_to(package).as_posix()}\0".encode())
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def stage_fingerprint(stage: Stage, data_id: Mapping, results_dir: Path,
                      code: str | None = None) -> tuple[str, dict]:
    """Hash of everything a stage's outputs depend on; the parts, for the manifest.
    `code`: :func:`code_sha256`, computed once per study run by the caller."""
    parts = {"notebook_sha256": notebook_sha256(stage.notebook),
             "code_sha256": code if code is not None else code_sha256(),
             "params": stage.params, "data": dict(data_id),
             "reads": {f.stem: _file_sha(f) for prefix in stage.reads
                       for f in sorted(results_dir.glob(f"{prefix}*.json"))}}
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return sha256_bytes(blob), parts


def why_changed(old: Mapping | None, parts: Mapping) -> str:
    if not old:
        return "never run"
    if old.get("status") != "ok":
        return f"last run {old.get('status', '?')}"
    old_parts = old.get("parts", {})
    for key, label in (("notebook_sha256", "notebook changed"),
                       ("code_sha256", "package code changed"), ("data", "data changed"),
                       ("params", "parameters changed"), ("reads", "inputs changed")):
        if old_parts.get(key) != json.loads(json.dumps(parts[key], default=str)):
            return label
    return "changed"
