"""Validate and decode images sent by clients, refusing bad input before it costs much.

Every check answers with an :class:`UploadError` carrying an HTTP status, a short machine
code and a sentence for people:

* size: more than ``max_bytes`` -> 413 (the server also refuses a too-large body while it
  is still arriving, see :mod:`fer_study.serve.app`);
* empty body -> 422; not JPEG, PNG or WebP by its *content* (the client's content type and
  file name are never trusted) -> 415;
* dimensions: read from the header alone (Pillow's lazy ``Image.open``), so a
  decompression bomb - a few kB of PNG or WebP that inflate to gigapixels - is refused
  before a single pixel is decoded -> 422;
* truncated or corrupt data -> 422 (Pillow raises on a missing tail instead of padding
  the image with grey, as OpenCV's ``imdecode`` would).

Phone photos are turned upright from their EXIF orientation, so boxes match what a person
sees.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

MAGIC_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000  # a 48 MP phone sensor bins to 12 MP; 40 MP is 120 MB as BGR
DEFAULT_MAX_SIDE = 10_000


class ApiError(Exception):
    """A request the server answers with an error: HTTP ``status``, a short machine
    ``code`` and a ``message`` for people (sent as ``{"error": code, "message": ...}``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class UploadError(ApiError):
    """A client sent something the server will not process."""


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may be: bytes on the wire, decoded pixels, longest side."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = DEFAULT_MAX_SIDE


@dataclass
class DecodedImage:
    """An upright BGR uint8 image and what it was sent as."""

    bgr: np.ndarray
    format: str  # "JPEG", "PNG" or "WEBP"

    @property
    def width(self) -> int:
        return int(self.bgr.shape[1])

    @property
    def height(self) -> int:
        return int(self.bgr.shape[0])


def sniff_format(data: bytes) -> str | None:
    """``"JPEG"``, ``"PNG"`` or ``"WEBP"`` from the first bytes, else None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def check_size(n_bytes: int, limits: UploadLimits) -> None:
    """413 for a body over the byte limit, 422 for an empty one."""
    if n_bytes > limits.max_bytes:
        raise UploadError(
            413,
            "payload_too_large",
            f"the upload is {n_bytes:,} bytes; the limit is {limits.max_bytes:,} bytes "
            f"({limits.max_bytes / 2**20:.0f} MiB)",
        )
    if n_bytes == 0:
        raise UploadError(422, "empty_upload", "the upload is empty (0 bytes): send an image")


def decode_image(data: bytes, limits: UploadLimits | None = None) -> DecodedImage:
    """Check ``data`` and decode it to an upright BGR image, or raise :class:`UploadError`."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    limits = limits or UploadLimits()
    check_size(len(data), limits)
    fmt = sniff_format(data)
    if fmt is None:
        raise UploadError(
            415,
            "unsupported_media_type",
            "the upload is not a JPEG, PNG or WebP image (judged by its content, not its "
            "name or content type)",
        )
    # Pillow's own bomb check warns at 89 MP and raises at 179 MP; ours below is stricter.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])  # reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UploadError(
            422, "image_too_large", f"refused before decoding (a decompression bomb?): {exc}"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UploadError(
            422, "corrupt_image", f"cannot read the {fmt} header: the file is truncated or damaged"
        ) from exc
    w, h = img.size
    if w < 1 or h < 1:
        raise UploadError(422, "corrupt_image", f"the {fmt} header says {w}x{h} pixels")
    if max(w, h) > limits.max_side or w * h > limits.max_pixels:
        raise UploadError(
            422,
            "image_too_large",
            f"the image is {w}x{h} pixels; at most {limits.max_side:,} per side and "
            f"{limits.max_pixels:,} in all are accepted (refused before decoding)",
        )
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        rgb = np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UploadError(
            422, "corrupt_image", f"the {fmt} image is truncated or corrupt ({exc})"
        ) from exc
    finally:
        img.close()
    return DecodedImage(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), fmt)
