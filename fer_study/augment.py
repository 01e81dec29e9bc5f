"""Training-time augmentation, batching and class weights (numpy + OpenCV, backend-agnostic)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import keras
import numpy as np

from fer_study.labels import NUM_CLASSES
from fer_study.model_input import center_crop


@dataclass
class AugmentConfig:
    """What to vary per training image. Zero/False disables a transform."""

    flip: bool = True
    rotation: float = 10.0  # degrees, uniform in [-r, r]
    shift: float = 0.1  # fraction of the side
    zoom: float = 0.1  # scale in [1 - z, 1 + z]
    brightness: float = 0.2  # additive, fraction of 255
    contrast: float = 0.2  # multiplicative around the mean
    erase_prob: float = 0.25  # random erasing (Zhong et al. 2020)
    mixup_alpha: float = 0.0  # 0 = off


def class_weights(labels: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Per-class loss weights (n / (k * count)) ** power, normalised to mean 1 over samples.

    power=1 is sklearn's "balanced"; 0.5 softens it so Disgust (~1.5% of FER2013 Training)
    gains recall without wrecking overall accuracy.
    """
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    w = np.where(counts > 0, (len(labels) / (NUM_CLASSES * np.maximum(counts, 1))) ** power, 0.0)
    return (w / (w[labels].mean())).astype(np.float32)


def augment_image(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig,
                  out_size: int) -> np.ndarray:
    """One random view of a (H, W) uint8 image, as float32 (out_size, out_size) in 0..255.

    All geometric jitter (rotation, zoom, shift and the random crop down to out_size) is one
    affine warp, so each image is resampled once.
    """
    h, w = img.shape
    scale = 1.0 + rng.uniform(-cfg.zoom, cfg.zoom) if cfg.zoom else 1.0
    angle = rng.uniform(-cfg.rotation, cfg.rotation) if cfg.rotation else 0.0
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    # Random crop: centre the output window anywhere the crop fits, plus the shift jitter.
    slack = (w - out_size) / 2
    dx = rng.uniform(-slack, slack) + (rng.uniform(-cfg.shift, cfg.shift) * w if cfg.shift else 0)
    dy = rng.uniform(-slack, slack) + (rng.uniform(-cfg.shift, cfg.shift) * h if cfg.shift else 0)
    m[0, 2] += dx - (w - out_size) / 2
    m[1, 2] += dy - (h - out_size) / 2
    out = cv2.warpAffine(img, m, (out_size, out_size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101).astype(np.float32)
    if cfg.flip and rng.random() < 0.5:
        out = out[:, ::-1]
    if cfg.contrast:
        mean = out.mean()
        out = (out - mean) * (1.0 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
    if cfg.brightness:
        out = out + rng.uniform(-cfg.brightness, cfg.brightness) * 255.0
    if cfg.erase_prob and rng.random() < cfg.erase_prob:
        area = rng.uniform(0.02, 0.2) * out_size * out_size
        ratio = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
        eh = int(min(out_size, round(math.sqrt(area * ratio))))
        ew = int(min(out_size, round(math.sqrt(area / ratio))))
        y0, x0 = rng.integers(0, out_size - eh + 1), rng.integers(0, out_size - ew + 1)
        out[y0:y0 + eh, x0:x0 + ew] = rng.uniform(0, 255, size=(eh, ew))
    return np.clip(out, 0, 255)


class FerBatches(keras.utils.PyDataset):
    """Batches of (images (B, S, S, 1) float32 0..255, one-hot/soft targets, sample weights).

    Targets are distributions so that label smoothing, FER+ soft labels and mixup all share
    one categorical cross-entropy. Training batches are shuffled and augmented with a seed
    per epoch, so a resumed run sees the same stream as an uninterrupted one.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 64,
                 input_size: int = 48, augment: AugmentConfig | None = None,
                 weights: np.ndarray | None = None, soft: np.ndarray | None = None,
                 soft_mask: np.ndarray | None = None, soft_weight: float = 0.0,
                 teacher: np.ndarray | None = None, teacher_weight: float = 0.0,
                 shuffle: bool = False, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.images, self.labels = images, labels.astype(np.int64)
        self.batch_size, self.input_size = batch_size, input_size
        self.augment, self.weights, self.shuffle, self.seed = augment, weights, shuffle, seed
        targets = np.eye(NUM_CLASSES, dtype=np.float32)[self.labels]
        if soft is not None and soft_weight > 0:
            # FER+ votes as extra supervision: blend where the row has usable votes.
            m = soft_mask if soft_mask is not None else np.ones(len(labels), dtype=bool)
            targets[m] = (1 - soft_weight) * targets[m] + soft_weight * soft[m]
        if teacher is not None and teacher_weight > 0:
            # Distillation: the teacher's distribution as part of the target.
            targets = (1 - teacher_weight) * targets + teacher_weight * teacher
        self.targets = targets
        self.epoch = 0
        self.order = np.arange(len(images))
        self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch - 1
        self.on_epoch_end()

    def on_epoch_end(self) -> None:
        self.epoch += 1
        if self.shuffle:
            self.order = np.random.default_rng((self.seed, self.epoch)).permutation(
                len(self.images))

    def __getitem__(self, i: int):
        idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        imgs = self.images[idx]
        s = self.input_size
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            x = np.stack([augment_image(im, rng, self.augment, s) for im in imgs])
        else:
            x = center_crop(imgs, s).astype(np.float32) if imgs.shape[1] != s else \
                imgs.astype(np.float32)
        y = self.targets[idx]
        w = self.weights[self.labels[idx]] if self.weights is not None else \
            np.ones(len(idx), dtype=np.float32)
        if self.augment is not None and self.augment.mixup_alpha > 0:
            lam = rng.beta(self.augment.mixup_alpha, self.augment.mixup_alpha, size=len(idx))
            perm = rng.permutation(len(idx))
            lx = lam.reshape(-1, 1, 1).astype(np.float32)
            x = lx * x + (1 - lx) * x[perm]
            ly = lam.reshape(-1, 1).astype(np.float32)
            y = ly * y + (1 - ly) * y[perm]
            w = (lam * w + (1 - lam) * w[perm]).astype(np.float32)
        return x[..., None], y, w
