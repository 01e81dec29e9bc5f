"""Loading FER2013 (csv or Kaggle folders), FER+ votes and the synthetic demo set.

Every loader returns a :class:`Dataset`: uint8 images (N, 48, 48), int64 labels in
``EMOTIONS`` order, a per-image split name and a provenance dict that says where the data came
from. Bad input raises :class:`DataError` naming the file and the row or path; nothing is
silently dropped.
"""

from __future__ import annotations

import csv
import hashlib
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fer_study.errors import DataError
from fer_study.labels import EMOTIONS, IMAGE_SIZE, NUM_CLASSES, SPLITS

PIXELS_PER_IMAGE = IMAGE_SIZE * IMAGE_SIZE
CSV_COLUMNS = ("emotion", "pixels", "Usage")
# The Kaggle image-folder release has no Public/Private distinction: its `test` folder is
# PublicTest + PrivateTest together (7,178 images).
FOLDER_SPLITS = {"train": "Training", "test": "Test"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
# FER+ vote columns, in the file's order; mapped onto FER2013's label order below.
FERPLUS_COLUMNS = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
    "unknown", "NF",
)
FERPLUS_TO_FER = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4,
                  "surprise": 5, "neutral": 6}


@dataclass
class Dataset:
    """Images, labels and split names, with the provenance of where they came from."""

    images: np.ndarray  # uint8 (N, 48, 48)
    labels: np.ndarray  # int64 (N,)
    usage: np.ndarray  # str (N,): Training / PublicTest / PrivateTest (or Test for folders)
    source: dict = field(default_factory=dict)
    soft_labels: np.ndarray | None = None  # float32 (N, 7) FER+ vote distributions, if attached
    soft_mask: np.ndarray | None = None  # bool (N,): rows with a usable FER+ distribution
    teacher_probs: np.ndarray | None = None  # float32 (N, 7) a teacher's probabilities

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 3 or self.images.dtype != np.uint8:
            raise DataError(f"images must be uint8 (N, H, W), got {self.images.dtype} "
                            f"{self.images.shape}")
        if len(self.labels) != n or len(self.usage) != n:
            raise DataError(f"images ({n}), labels ({len(self.labels)}) and usage "
                            f"({len(self.usage)}) differ in length")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def is_synthetic(self) -> bool:
        return bool(self.source.get("synthetic", False))

    @property
    def splits(self) -> list[str]:
        present = set(np.unique(self.usage).tolist())
        ordered = [s for s in (*SPLITS, "Test") if s in present]
        return ordered + sorted(present - set(ordered))

    def mask(self, split: str) -> np.ndarray:
        m = self.usage == split
        if not m.any():
            raise DataError(f"split {split!r} is empty or absent; this dataset has "
                            f"{self.splits}")
        return m

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of one split."""
        m = self.mask(split)
        return self.images[m], self.labels[m]

    def subset(self, split: str) -> Dataset:
        m = self.mask(split)
        return self.select(m)

    def select(self, index: np.ndarray) -> Dataset:
        return replace(
            self, images=self.images[index], labels=self.labels[index], usage=self.usage[index],
            soft_labels=None if self.soft_labels is None else self.soft_labels[index],
            soft_mask=None if self.soft_mask is None else self.soft_mask[index],
            teacher_probs=None if self.teacher_probs is None else self.teacher_probs[index])

    def split_sizes(self) -> dict[str, int]:
        return {s: int((self.usage == s).sum()) for s in self.splits}

    def class_counts(self, split: str | None = None) -> dict[str, int]:
        labels = self.labels if split is None else self.labels[self.mask(split)]
        counts = np.bincount(labels, minlength=NUM_CLASSES)
        return {name: int(c) for name, c in zip(EMOTIONS, counts)}

    def provenance(self) -> dict:
        """What a results file should record about the data it was computed on."""
        return {**self.source, "split_sizes": self.split_sizes(),
                "class_counts": {s: self.class_counts(s) for s in self.splits},
                "ferplus_attached": self.soft_labels is not None}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _require_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{what} not found: {p}. See data/README.md for how to obtain it.")
    if not p.is_file():
        raise DataError(f"{what} must be a file, got a directory: {p}")
    return p


def cache_dir() -> Path:
    return Path(os.environ.get("FER_STUDY_CACHE", Path.home() / ".cache" / "fer_study"))


# --------------------------------------------------------------------------- FER2013 csv

def _parse_pixels(text: str, where: str) -> np.ndarray:
    """One `pixels` cell -> 2304 uint8 values, or a DataError that says what is wrong."""
    with warnings.catch_warnings():
        # np.fromstring only warns (and truncates) on a bad token; make that an error.
        warnings.simplefilter("error")
        try:
            values = np.fromstring(text, dtype=np.int64, sep=" ")
        except (DeprecationWarning, ValueError):
            bad = next((t for t in text.split() if not t.lstrip("-").isdigit()), text[:20])
            raise DataError(f"{where}: pixels contain a non-integer value {bad!r}") from None
    if values.size != PIXELS_PER_IMAGE:
        raise DataError(f"{where}: pixels has {values.size} values, expected "
                        f"{PIXELS_PER_IMAGE} (48x48)")
    if values.min() < 0 or values.max() > 255:
        raise DataError(f"{where}: pixel values must be in 0-255, found "
                        f"{values.min()}..{values.max()}")
    return values.astype(np.uint8)


def parse_fer2013_csv(path: str | os.PathLike) -> Dataset:
    """Parse the original `fer2013.csv` (columns emotion, pixels, Usage) without caching."""
    p = _require_file(path, "FER2013 csv")
    images, labels, usage = [], [], []
    with open(p, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{p}: the file is empty")
        header = [h.strip() for h in header]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{p}: missing column(s) {missing}; expected columns "
                            f"{list(CSV_COLUMNS)}, found {header}")
        ie, ip, iu = (header.index(c) for c in CSV_COLUMNS)
        for line_no, row in enumerate(reader, start=2):
            where = f"{p.name} line {line_no}"
            if len(row) != len(header):
                raise DataError(f"{where}: expected {len(header)} fields, found {len(row)}")
            try:
                label = int(row[ie])
            except ValueError:
                raise DataError(f"{where}: emotion {row[ie]!r} is not an integer") from None
            if not 0 <= label < NUM_CLASSES:
                raise DataError(f"{where}: unknown emotion label {label}; expected 0-6 "
                                f"({', '.join(EMOTIONS)})")
            split = row[iu].strip()
            if split not in SPLITS:
                raise DataError(f"{where}: unknown Usage {split!r}; expected one of {SPLITS}")
            images.append(_parse_pixels(row[ip], where))
            labels.append(label)
            usage.append(split)
    if not images:
        raise DataError(f"{p}: the file has a header but no rows")
    return Dataset(
        images=np.stack(images).reshape(-1, IMAGE_SIZE, IMAGE_SIZE),
        labels=np.asarray(labels, dtype=np.int64), usage=np.asarray(usage),
        source={"dataset": "FER2013", "format": "csv", "path": str(p), "synthetic": False})


def load_fer2013_csv(path: str | os.PathLike, cache: bool = True) -> Dataset:
    """Load `fer2013.csv`, parsing it once and caching the arrays keyed by the file's sha256."""
    p = _require_file(path, "FER2013 csv")
    digest = sha256_file(p)
    cached = cache_dir() / f"fer2013_{digest[:16]}.npz"
    if cache and cached.exists():
        with np.load(cached) as z:
            ds = Dataset(images=z["images"], labels=z["labels"].astype(np.int64),
                         usage=z["usage"].astype(str))
    else:
        ds = parse_fer2013_csv(p)
        if cache:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp.npz")
            np.savez(tmp, images=ds.images, labels=ds.labels, usage=ds.usage)
            tmp.replace(cached)  # atomic, so an interrupted parse never leaves a bad cache
    ds.source = {"dataset": "FER2013", "format": "csv", "path": str(p), "sha256": digest,
                 "synthetic": False}
    return ds


# --------------------------------------------------------------------------- Kaggle folders

def _read_gray(path: Path) -> np.ndarray:
    import cv2  # imported here so the csv path does not pay for OpenCV

    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise DataError(f"cannot read image file {path} (corrupt or not an image)")
    if img.shape != (IMAGE_SIZE, IMAGE_SIZE):
        img = cv2.resize(img, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    return img


def load_fer2013_folders(root: str | os.PathLike) -> Dataset:
    """Load the Kaggle image-folder layout `root/{train,test}/<class>/*.png|jpg`.

    Class folder names may be in any case. `test` is recorded as split "Test" (it is
    PublicTest + PrivateTest together), so validation must be carved out of Training.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"FER2013 folder not found: {root}. Expected {root}/train/<class>/ and "
                        f"{root}/test/<class>/; see data/README.md.")
    names = {e.lower(): i for i, e in enumerate(EMOTIONS)}
    images, labels, usage, files = [], [], [], 0
    split_dirs = {}
    for folder in FOLDER_SPLITS:
        split_dirs[folder] = next((d for d in root.iterdir()
                                   if d.is_dir() and d.name.lower() == folder), None)
        if split_dirs[folder] is None:
            raise DataError(f"{root}: no '{folder}/' folder; expected train/ and test/")
    for folder, split in FOLDER_SPLITS.items():
        split_dir = split_dirs[folder]
        class_dirs = sorted(d for d in split_dir.iterdir() if d.is_dir())
        if not class_dirs:
            raise DataError(f"{split_dir}: contains no class folders")
        for d in class_dirs:
            if d.name.lower() not in names:
                raise DataError(f"{d}: unknown class folder {d.name!r}; expected one of "
                                f"{[e.lower() for e in EMOTIONS]} (any case)")
            paths = sorted(f for f in d.iterdir() if f.is_file()
                           and not f.name.startswith("."))
            others = [f.name for f in paths if f.suffix.lower() not in IMAGE_SUFFIXES]
            if others:
                raise DataError(f"{d}: non-image file(s) {others[:3]}; expected "
                                f"{sorted(IMAGE_SUFFIXES)}")
            if not paths:
                raise DataError(f"{d}: class folder is empty")
            for f in paths:
                images.append(_read_gray(f))
            labels += [names[d.name.lower()]] * len(paths)
            usage += [split] * len(paths)
            files += len(paths)
    digest = hashlib.sha256()
    for img in images:
        digest.update(img.tobytes())
    return Dataset(
        images=np.stack(images), labels=np.asarray(labels, dtype=np.int64),
        usage=np.asarray(usage),
        source={"dataset": "FER2013", "format": "folders", "path": str(root),
                "pixels_sha256": digest.hexdigest(), "synthetic": False,
                "note": "folder 'test' = PublicTest + PrivateTest"})


# --------------------------------------------------------------------------- FER+

@dataclass
class FerPlusVotes:
    """FER+ crowd votes, aligned row by row with fer2013.csv."""

    soft: np.ndarray  # float32 (N, 7): vote distribution in FER2013 label order
    majority: np.ndarray  # int64 (N,): FER2013-order label, -1 where FER+ drops the row
    keep: np.ndarray  # bool (N,)
    usage: np.ndarray  # str (N,)
    sha256: str
    named: np.ndarray | None = None  # bool (N,): FER+ gave the row an image name
    top_nf: np.ndarray | None = None  # bool (N,): "NF" (not a face) is the top vote

    @property
    def nonface(self) -> np.ndarray:
        """Rows FER+ calls non-faces: no image name (dropped as non-faces) or NF on top."""
        n = len(self.keep)
        named = self.named if self.named is not None else np.ones(n, bool)
        top_nf = self.top_nf if self.top_nf is not None else np.zeros(n, bool)
        return ~named | top_nf


def load_ferplus(path: str | os.PathLike) -> FerPlusVotes:
    """Read `fer2013new.csv` and turn its 10 votes per image into labels the FER+ way.

    As in the FER+ reference code, a single vote for an emotion is treated as noise and
    removed; rows without an image name (non-faces) or whose top vote is unknown, NF or
    contempt (a class FER2013 lacks) are dropped (keep=False).
    """
    p = _require_file(path, "FER+ csv (fer2013new.csv)")
    with open(p, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        need = ("Usage", "Image name", *FERPLUS_COLUMNS)
        missing = [c for c in need if c not in header]
        if missing:
            raise DataError(f"{p}: missing FER+ column(s) {missing}; found {header}")
        idx = [header.index(c) for c in FERPLUS_COLUMNS]
        iu, iname = header.index("Usage"), header.index("Image name")
        votes, usage, named = [], [], []
        for line_no, row in enumerate(reader, start=2):
            try:
                votes.append([float(row[i]) for i in idx])
            except (ValueError, IndexError):
                raise DataError(f"{p.name} line {line_no}: vote counts must be numbers, "
                                f"got {row}") from None
            usage.append(row[iu].strip())
            named.append(bool(row[iname].strip()))
    v = np.asarray(votes, dtype=np.float32)
    v[v <= 1] = 0.0  # single votes are noise (FER+ reference)
    top = v.argmax(axis=1)
    top_name = np.asarray(FERPLUS_COLUMNS)[top]
    keep = np.asarray(named) & (v.sum(axis=1) > 0) & ~np.isin(top_name,
                                                             ["unknown", "NF", "contempt"])
    fer_votes = np.zeros((len(v), NUM_CLASSES), dtype=np.float32)
    for name, j in FERPLUS_TO_FER.items():
        fer_votes[:, j] = v[:, FERPLUS_COLUMNS.index(name)]
    total = fer_votes.sum(axis=1, keepdims=True)
    keep &= total[:, 0] > 0
    soft = np.divide(fer_votes, total, out=np.zeros_like(fer_votes), where=total > 0)
    majority = np.where(keep, fer_votes.argmax(axis=1), -1).astype(np.int64)
    soft[~keep] = 0.0
    return FerPlusVotes(soft=soft, majority=majority, keep=keep, usage=np.asarray(usage),
                        sha256=sha256_file(p), named=np.asarray(named, dtype=bool),
                        top_nf=(top_name == "NF") & (v.sum(axis=1) > 0))


def attach_ferplus(ds: Dataset, path: str | os.PathLike) -> Dataset:
    """Return `ds` with FER+ soft labels; the FER+ rows must line up with the csv's rows."""
    votes = load_ferplus(path)
    if ds.source.get("format") != "csv":
        raise DataError("FER+ votes are aligned with fer2013.csv rows; load FER2013 from the "
                        "csv (not the image folders) to attach them")
    if len(votes.usage) != len(ds):
        raise DataError(f"FER+ rows do not line up: {path} has {len(votes.usage)} rows, "
                        f"the FER2013 csv has {len(ds)}")
    bad = np.flatnonzero(votes.usage != ds.usage)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"FER+ rows do not line up: data row {i + 1} (file line {i + 2}) has "
                        f"Usage {votes.usage[i]!r} in {path} but {ds.usage[i]!r} in the csv "
                        f"({bad.size} such rows)")
    out = replace(ds, soft_labels=votes.soft, soft_mask=votes.keep)
    out.source = {**ds.source, "ferplus_path": str(path), "ferplus_sha256": votes.sha256,
                  "ferplus_usable_rows": int(votes.keep.sum())}
    return out


# --------------------------------------------------------------------------- synthetic

SYNTHETIC_DEFAULT_SIZES = {"Training": 2100, "PublicTest": 700, "PrivateTest": 700}


def load_synthetic(sizes: dict[str, int] | None = None, seed: int = 0,
                   difficulty: float = 1.0) -> Dataset:
    """The embedded synthetic demo set: procedurally drawn faces, one seed per split."""
    from fer_study.synthetic import make_synthetic

    sizes = {**SYNTHETIC_DEFAULT_SIZES, **(sizes or {})}
    images, labels, usage = [], [], []
    for k, split in enumerate(SPLITS):
        x, y = make_synthetic(sizes[split], seed=seed * 1000 + k, difficulty=difficulty)
        images.append(x)
        labels.append(y)
        usage += [split] * len(x)
    return Dataset(
        images=np.concatenate(images), labels=np.concatenate(labels).astype(np.int64),
        usage=np.asarray(usage),
        source={"dataset": "synthetic demo set (procedurally drawn faces, NOT FER2013)",
                "format": "synthetic", "synthetic": True, "seed": seed,
                "difficulty": difficulty, "sizes": sizes})


# --------------------------------------------------------------------------- dispatch

def load_dataset(spec: str | os.PathLike = "synthetic", ferplus: str | os.PathLike | None = None,
                 synthetic_sizes: dict[str, int] | None = None, seed: int = 0,
                 cache: bool = True) -> Dataset:
    """`"synthetic"`, a `fer2013.csv` path, or a Kaggle folder root -> Dataset."""
    if str(spec) == "synthetic":
        if ferplus:
            raise DataError("FER+ votes belong to FER2013; they cannot be attached to the "
                            "synthetic demo set")
        return load_synthetic(synthetic_sizes, seed=seed)
    p = Path(spec).expanduser()
    if p.is_dir():
        ds = load_fer2013_folders(p)
    elif p.suffix.lower() == ".csv" or p.exists():
        ds = load_fer2013_csv(p, cache=cache)
    else:
        raise DataError(f"data not found: {p}. Give 'synthetic', a fer2013.csv path or a "
                        f"folder with train/ and test/; see data/README.md.")
    return attach_ferplus(ds, ferplus) if ferplus else ds


def train_val_test(ds: Dataset, val_fraction: float = 0.1, seed: int = 0
                   ) -> tuple[Dataset, Dataset, Dataset | None]:
    """Training, selection and report splits under the FER2013 protocol.

    With PublicTest/PrivateTest present: fit on Training, select on PublicTest, report
    PrivateTest. The folder layout has only Training/Test, so a stratified `val_fraction` of
    Training is held out for selection and Test is the report split.
    """
    if "PublicTest" in ds.splits:
        test = ds.subset("PrivateTest") if "PrivateTest" in ds.splits else None
        return ds.subset("Training"), ds.subset("PublicTest"), test
    train = ds.subset("Training")
    rng = np.random.default_rng(seed)
    val_idx = []
    for c in range(NUM_CLASSES):
        idx = np.flatnonzero(train.labels == c)
        val_idx.append(rng.permutation(idx)[: int(round(len(idx) * val_fraction))])
    is_val = np.zeros(len(train), dtype=bool)
    is_val[np.concatenate(val_idx)] = True
    val = train.select(is_val)
    val.usage = np.full(len(val), "Validation")
    test = ds.subset("Test") if "Test" in ds.splits else None
    return train.select(~is_val), val, test


def stratified_sample(labels: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `n` items, as balanced over classes as the data allows."""
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(labels == c)).tolist()
             for c in range(NUM_CLASSES)]
    picked: list[int] = []
    while len(picked) < n:  # round-robin over classes until n are taken
        for pool in pools:
            if pool and len(picked) < n:
                picked.append(pool.pop())
    return np.sort(np.asarray(picked, dtype=np.int64))


def random_subset(n: int, cap: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a uniform random subset of size `cap` (all of range(n) if None):
    unlike :func:`stratified_sample` it keeps the split's own class mix."""
    if cap is None or cap >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:cap])


def duplicates_across_splits(ds: Dataset, near: bool = False) -> list[tuple[int, int]]:
    """Index pairs (i, j) of identical (or, with near=True, perceptually equal) images that sit
    in different splits. Near uses an 8x8 average hash, which ignores tiny pixel noise."""
    if near:
        import cv2

        small = np.stack([cv2.resize(im, (8, 8), interpolation=cv2.INTER_AREA)
                          for im in ds.images]).reshape(len(ds), -1)
        keys = [np.packbits(row > row.mean()).tobytes() for row in small]
    else:
        keys = [hashlib.blake2b(im.tobytes(), digest_size=16).digest() for im in ds.images]
    first: dict[bytes, list[int]] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, []).append(i)
    pairs = []
    for group in first.values():
        for a in range(len(group)):
            for b in range(a + 1, len(group)):
                i, j = group[a], group[b]
                if ds.usage[i] != ds.usage[j]:
                    pairs.append((i, j))
    return pairs


def drop_training_nonfaces(ds: Dataset, ferplus: str | os.PathLike | None) -> Dataset:
    """FER2013 without the Training rows FER+ marks as non-faces (test splits untouched)."""
    if not ferplus:
        raise DataError("drop_nonfaces needs the FER+ votes: pass --ferplus fer2013new.csv")
    nonface = load_ferplus(ferplus).nonface
    if len(nonface) != len(ds):
        raise DataError(f"FER+ rows ({len(nonface)}) do not line up with the data ({len(ds)})")
    drop = nonface & (ds.usage == "Training")
    out = ds.select(~drop)
    out.source = {**ds.source, "training_nonfaces_dropped": int(drop.sum())}
    return out
