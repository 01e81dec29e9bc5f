"""Test inputs for the API: a real one-face frame, and every kind of bad upload.

Used by the load benchmark (:mod:`fer_study.serve.loadtest`) and the tests: the frame is
scikit-image's astronaut photo (a real frontal face, public domain) on a plain background;
the bad uploads are built here, nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

import cv2
import numpy as np


def sample_frame(width: int = 640, height: int = 480) -> np.ndarray:
    """A BGR frame with one real frontal face (~150 px) on a plain textured background."""
    from skimage import data

    head = np.ascontiguousarray(data.astronaut()[15:255, 110:330, ::-1])  # BGR, face ~95 px
    head = cv2.resize(head, None, fx=1.6, fy=1.6, interpolation=cv2.INTER_LINEAR)
    frame = np.full((height, width, 3), 70, np.uint8)
    frame[:, :, 1] = np.linspace(40, 160, width, dtype=np.uint8)[None, :]
    hh, ww = min(head.shape[0], height), min(head.shape[1], width)
    x0, y0 = (width - ww) // 2, (height - hh) // 2
    frame[y0 : y0 + hh, x0 : x0 + ww] = head[:hh, :ww]
    return frame


def sample_jpeg(width: int = 640, height: int = 480, quality: int = 90) -> bytes:
    """:func:`sample_frame` as JPEG bytes."""
    ok, buf = cv2.imencode(".jpg", sample_frame(width, height), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("cannot encode the sample frame as JPEG")
    return buf.tobytes()


def multipart_body(data: bytes, filename: str = "face.jpg") -> tuple[bytes, str]:
    """(body, content type) of a form with one ``file`` field, as a browser sends it."""
    boundary = "fer-study-" + hashlib.sha256(data).hexdigest()[:24]
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
        f"filename=\"{filename}\"\r\nContent-Type: image/jpeg\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + data + tail, f"multipart/form-data; boundary={boundary}"


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_bomb(side: int = 30_000) -> bytes:
    """A real decompression bomb: a valid ``side`` x ``side`` 1-bit black PNG (900 MP for
    the default) whose pixel data compresses to ~100 kB."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def huge_jpeg(side: int = 60_000) -> bytes:
    """The sample JPEG with its frame header (SOF0) claiming ``side`` x ``side`` pixels."""
    data = bytearray(sample_jpeg())
    i = data.find(b"\xff\xc0")
    if i < 0:
        raise ValueError("the sample JPEG has no baseline frame header")
    data[i + 5 : i + 9] = struct.pack(">HH", side, side)  # height, width
    return bytes(data)


def bad_uploads(max_bytes: int) -> list[tuple[str, bytes, str]]:
    """(case, body, content type) for every kind of upload the server must refuse."""
    from io import BytesIO

    from PIL import Image

    jpeg = sample_jpeg()
    png = BytesIO()
    Image.new("L", (64, 64)).save(png, format="PNG")
    return [
        ("zero_bytes", b"", "image/jpeg"),
        ("not_an_image", b"just some text, not an image\n" * 10, "image/jpeg"),
        ("gif_not_accepted", b"GIF89a" + b"\x00" * 64, "image/gif"),
        ("truncated_jpeg", jpeg[: len(jpeg) // 2], "image/jpeg"),
        ("truncated_png", png.getvalue()[:40], "image/png"),
        ("decompression_bomb_png", png_bomb(), "image/png"),
        ("huge_dimensions_jpeg", huge_jpeg(), "image/jpeg"),
        ("over_size_limit", b"\xff\xd8\xff" + b"\x00" * (max_bytes + 1), "image/jpeg"),
    ]
