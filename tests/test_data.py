"""Data tier: loaders on files the tests write, every bad-input error, split integrity."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import fake_rows, write_fer_csv

from fer_study.data import (
    DataError,
    attach_ferplus,
    duplicates_across_splits,
    load_dataset,
    load_fer2013_csv,
    load_fer2013_folders,
    load_ferplus,
    load_synthetic,
    train_val_test,
)
from fer_study.labels import EMOTIONS

FERPLUS_HEADER = ("Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,"
                  "contempt,unknown,NF")


# --------------------------------------------------------------------------- csv

def test_csv_round_trip(fer_csv):
    path, images, labels, usage = fer_csv
    ds = load_fer2013_csv(path)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert list(ds.usage) == list(usage)
    assert ds.split_sizes() == {"Training": 7, "PublicTest": 7, "PrivateTest": 7}
    assert ds.source["sha256"] and not ds.is_synthetic


def test_csv_cache_is_used_and_keyed_by_content(fer_csv, tmp_path):
    path, images, *_ = fer_csv
    load_fer2013_csv(path)
    cached = list((tmp_path / "cache").glob("fer2013_*.npz"))
    assert len(cached) == 1
    # A changed file must not be served from the stale cache.
    imgs2, labels2, usage2 = fake_rows(21, seed=5)
    write_fer_csv(path, imgs2, labels2, usage2)
    np.testing.assert_array_equal(load_fer2013_csv(path).images, imgs2)


def test_csv_columns_in_any_order(tmp_path):
    images, labels, usage = fake_rows(7)
    path = tmp_path / "reordered.csv"
    with open(path, "w") as f:
        f.write("Usage,emotion,pixels\n")
        for img, y, u in zip(images, labels, usage):
            f.write(f"{u},{y},{' '.join(map(str, img.ravel()))}\n")
    np.testing.assert_array_equal(load_fer2013_csv(path, cache=False).labels, labels)


def _bad_csv(tmp_path, mutate) -> str:
    images, labels, usage = fake_rows(5)
    rows = [[str(y), " ".join(map(str, im.ravel())), u] for im, y, u in zip(images, labels, usage)]
    mutate(rows)
    path = tmp_path / "bad.csv"
    path.write_text("emotion,pixels,Usage\n" + "".join(",".join(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r[2].__setitem__(1, " ".join(["1"] * 2303)), "line 4: pixels has 2303 values"),
    (lambda r: r[1].__setitem__(1, r[1][1] + " 7"), "line 3: pixels has 2305 values"),
    (lambda r: r[0].__setitem__(1, "12 x3 " + " ".join(["1"] * 2302)), "non-integer value 'x3'"),
    (lambda r: r[3].__setitem__(1, "256 " + " ".join(["1"] * 2303)), "line 5: pixel values"),
    (lambda r: r[0].__setitem__(0, "7"), "line 2: unknown emotion label 7"),
    (lambda r: r[0].__setitem__(0, "happy"), "emotion 'happy' is not an integer"),
    (lambda r: r[4].__setitem__(2, "Validation"), "line 6: unknown Usage 'Validation'"),
    (lambda r: r[1].append("extra"), "line 3: expected 3 fields"),
])
def test_csv_bad_rows_name_the_line(tmp_path, mutate, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        load_fer2013_csv(_bad_csv(tmp_path, mutate), cache=False)


def test_csv_wrong_columns(tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("label,image,split\n0,1 2,Training\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['emotion', 'pixels', 'Usage'\]"):
        load_fer2013_csv(path, cache=False)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="not found.*nope.csv"):
        load_dataset(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_fer2013_csv(empty, cache=False)
    header_only = tmp_path / "header.csv"
    header_only.write_text("emotion,pixels,Usage\n")
    with pytest.raises(DataError, match="no rows"):
        load_fer2013_csv(header_only, cache=False)


# --------------------------------------------------------------------------- folders

def _write_folders(root, per_class: int = 2, names=None) -> None:
    names = names or [e.lower() for e in EMOTIONS]
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in names:
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(per_class):
                img = rng.integers(0, 256, (48, 48), dtype=np.uint8)
                cv2.imwrite(str(d / f"im{i}.{'png' if i % 2 else 'jpg'}"), img)


def test_folders_load_any_case(tmp_path):
    _write_folders(tmp_path, names=[e.upper() if i % 2 else e.lower()
                                    for i, e in enumerate(EMOTIONS)])
    ds = load_fer2013_folders(tmp_path)
    assert ds.split_sizes() == {"Training": 14, "Test": 14}
    assert ds.class_counts("Training") == {e: 2 for e in EMOTIONS}
    train, val, test = train_val_test(ds, val_fraction=0.5)
    assert set(val.usage) == {"Validation"} and len(train) + len(val) == 14
    assert len(test) == 14


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_fer2013_folders(tmp_path / "missing")
    (tmp_path / "a" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no 'test/' folder"):
        load_fer2013_folders(tmp_path / "a")
    _write_folders(tmp_path / "b", names=["happy", "contempt"])
    with pytest.raises(DataError, match="unknown class folder 'contempt'"):
        load_fer2013_folders(tmp_path / "b")
    _write_folders(tmp_path / "c", names=["happy"])
    (tmp_path / "c" / "train" / "sad").mkdir()
    with pytest.raises(DataError, match="sad: class folder is empty"):
        load_fer2013_folders(tmp_path / "c")
    _write_folders(tmp_path / "d", names=["happy"])
    (tmp_path / "d" / "test" / "happy" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image file .*broken.png"):
        load_fer2013_folders(tmp_path / "d")


# --------------------------------------------------------------------------- FER+

def _write_ferplus(path, usage, votes, names=None) -> None:
    lines = [FERPLUS_HEADER]
    for i, (u, v) in enumerate(zip(usage, votes)):
        name = f"fer{i:07d}.png" if names is None else names[i]
        lines.append(f"{u},{name}," + ",".join(map(str, v)))
    path.write_text("\n".join(lines) + "\n")


def test_ferplus_majority_soft_and_drops(tmp_path):
    # columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
    votes = [[0, 8, 1, 0, 0, 0, 0, 0, 1, 0],   # happiness; the single surprise vote is noise
             [4, 0, 0, 0, 3, 2, 0, 0, 1, 0],   # neutral 4/9, anger 3/9, disgust 2/9
             [0, 0, 0, 0, 0, 0, 0, 0, 2, 8],   # NF -> dropped
             [2, 0, 0, 0, 0, 0, 0, 6, 2, 0],   # contempt majority -> dropped (not in FER2013)
             [0, 0, 0, 0, 0, 0, 10, 0, 0, 0]]  # fear
    path = tmp_path / "fer2013new.csv"
    _write_ferplus(path, ["Training"] * 5, votes, names=["a", "b", "c", "d", ""])
    fp = load_ferplus(path)
    assert fp.keep.tolist() == [True, True, False, False, False]  # last row has no image name
    assert fp.majority.tolist()[:2] == [EMOTIONS.index("Happy"), EMOTIONS.index("Neutral")]
    np.testing.assert_allclose(fp.soft[0, EMOTIONS.index("Happy")], 1.0)
    np.testing.assert_allclose(fp.soft[1, [0, 1, 6]], [3 / 9, 2 / 9, 4 / 9], rtol=1e-6)
    np.testing.assert_allclose(fp.soft[fp.keep].sum(axis=1), 1.0, rtol=1e-6)


def test_ferplus_attach_and_misalignment(fer_csv, tmp_path):
    path, _, _, usage = fer_csv
    ds = load_fer2013_csv(path)
    good = tmp_path / "ferplus.csv"
    _write_ferplus(good, usage, [[10, 0, 0, 0, 0, 0, 0, 0, 0, 0]] * len(usage))
    out = attach_ferplus(ds, good)
    assert out.soft_labels.shape == (21, 7) and out.soft_mask.all()
    short = tmp_path / "short.csv"
    _write_ferplus(short, usage[:-1], [[10] + [0] * 9] * 20)
    with pytest.raises(DataError, match="do not line up: .* 20 rows, the FER2013 csv has 21"):
        attach_ferplus(ds, short)
    shifted = tmp_path / "shifted.csv"
    _write_ferplus(shifted, np.roll(usage, 1), [[10] + [0] * 9] * 21)
    with pytest.raises(DataError, match="do not line up: data row 1"):
        attach_ferplus(ds, shifted)
    with pytest.raises(DataError, match="cannot be attached to the synthetic"):
        load_dataset("synthetic", ferplus=good)


# --------------------------------------------------------------------------- synthetic + splits

def test_synthetic_dataset_is_labelled_and_split():
    ds = load_synthetic({"Training": 70, "PublicTest": 35, "PrivateTest": 35})
    assert ds.is_synthetic and "NOT FER2013" in ds.source["dataset"]
    assert ds.split_sizes() == {"Training": 70, "PublicTest": 35, "PrivateTest": 35}
    assert set(ds.labels.tolist()) == set(range(7))
    # splits come from different seeds: no image is shared between them
    assert duplicates_across_splits(ds) == []


def test_duplicates_across_splits_found():
    images, labels, usage = fake_rows(6)
    images[4] = images[0]  # Training row 0 reappears in PublicTest row 4
    images[5] = images[2]  # PrivateTest row 2 reappears in PrivateTest row 5: same split, fine
    noisy = images.copy()
    noisy[3] = np.clip(images[1].astype(int) + 1, 0, 255).astype(np.uint8)  # near duplicate
    from fer_study.data import Dataset

    ds = Dataset(images, labels.astype(np.int64), usage)
    assert duplicates_across_splits(ds) == [(0, 4)]
    near = duplicates_across_splits(Dataset(noisy, labels.astype(np.int64), usage), near=True)
    assert (1, 3) in near


def test_split_errors():
    ds = load_synthetic({"Training": 14, "PublicTest": 7, "PrivateTest": 7})
    with pytest.raises(DataError, match="split 'Test' is empty or absent"):
        ds.split("Test")
    train, val, test = train_val_test(ds)
    assert set(train.usage) == {"Training"} and set(val.usage) == {"PublicTest"}
    assert set(test.usage) == {"PrivateTest"}


def test_stratified_sample_and_random_subset():
    from fer_study.data import random_subset, stratified_sample

    labels = np.repeat(np.arange(7), [50, 3, 50, 50, 50, 50, 50])
    idx = stratified_sample(labels, 70, seed=1)
    assert len(idx) == 70 and len(set(idx.tolist())) == 70 and (np.diff(idx) > 0).all()
    counts = np.bincount(labels[idx], minlength=7)
    assert counts[1] == 3 and counts.max() - counts[counts != 3].min() <= 1
    assert np.array_equal(idx, stratified_sample(labels, 70, seed=1))
    assert len(stratified_sample(labels, None)) == len(labels)
    sub = random_subset(len(labels), 100, seed=2)
    assert len(set(sub.tolist())) == 100 and (np.diff(sub) > 0).all()
    assert np.array_equal(random_subset(5, None), np.arange(5))
