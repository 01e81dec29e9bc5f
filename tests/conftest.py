"""Shared fixtures and helpers: small FER2013-format files written by the tests themselves,
and reading markdown tables back."""

from __future__ import annotations

import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from fer_study.labels import EMOTIONS

USAGES = ("Training", "PublicTest", "PrivateTest")


def fake_rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n random 48x48 images with labels cycling through 0..6 and a mix of usages."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)
    labels = np.arange(n) % len(EMOTIONS)
    usage = np.asarray([USAGES[i % 3] for i in range(n)])
    return images, labels, usage


def write_fer_csv(path, images, labels, usage, header="emotion,pixels,Usage") -> None:
    with open(path, "w") as f:
        f.write(header + "\n")
        for img, y, u in zip(images, labels, usage):
            f.write(f"{y},{' '.join(map(str, img.ravel()))},{u}\n")


def parse_md_table(text: str, after: str) -> list[dict[str, str]]:
    """The first markdown table after the line containing `after`, as dicts of cell text."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if after in ln)
    i = next(j for j in range(start, len(lines)) if lines[j].startswith("|"))
    header = [c.strip() for c in lines[i].strip("|").split(" | ")]
    rows = []
    for ln in lines[i + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\) \| ", ln.strip()[1:-1].strip())]
        rows.append(dict(zip(header, cells)))
    return rows


@pytest.fixture
def fer_csv(tmp_path, monkeypatch):
    """A 21-row fer2013.csv, its arrays, and a private cache folder."""
    monkeypatch.setenv("FER_STUDY_CACHE", str(tmp_path / "cache"))
    images, labels, usage = fake_rows(21)
    path = tmp_path / "fer2013.csv"
    write_fer_csv(path, images, labels, usage)
    return path, images, labels, usage


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_STUDY_CACHE", str(tmp_path / "cache"))
