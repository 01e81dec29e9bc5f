"""Run TFLite emotion classifiers: the runtime half of the export (no TensorFlow needed).

Inference prefers the standalone LiteRT interpreter (``ai_edge_litert``): it imports in
~10 ms instead of TensorFlow's ~7 s and runs the same kernels (XNNPACK) at the same speed.
``tf.lite.Interpreter`` (deprecated but working in TF 2.21) is the fallback.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fer_study.errors import ExportError
from fer_study.labels import NUM_CLASSES


def quiet_tf() -> None:
    """Keep TensorFlow's C++ logs to warnings; only effective before its first import."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_interpreter(model: str | os.PathLike[str] | bytes, num_threads: int = 1) -> Any:
    """A TFLite interpreter from a file path or flatbuffer bytes (LiteRT preferred)."""
    kwargs: dict[str, Any] = {"num_threads": num_threads}
    if isinstance(model, bytes):
        kwargs["model_content"] = model
    else:
        kwargs["model_path"] = str(model)
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        quiet_tf()
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    try:
        with warnings.catch_warnings():
            # tf.lite.Interpreter warns that it is deprecated for ai_edge_litert; it still
            # works in TF 2.21 and runs the same kernels.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            return Interpreter(**kwargs)
    except (ValueError, RuntimeError) as exc:
        where = kwargs.get("model_path", "<bytes>")
        raise ExportError(f"cannot load TFLite model {where}: {exc}") from exc


class TFLiteClassifier:
    """Run a TFLite emotion classifier on batches of faces.

    ``predict`` takes float32 (N, S, S, 1) pixel values in [0, 255] and returns (N, 7)
    probabilities.  The interpreter's batch dimension is resized when N changes (cheap:
    ~10 us on the models of this project), so all faces of a frame go through one invoke;
    a model exported with a fixed batch size is fed in chunks of that size instead.
    Models with int8/uint8 I/O are also accepted: inputs are quantised and outputs
    dequantised here.
    """

    def __init__(
        self, path: str | os.PathLike[str] | bytes, num_threads: int = 1, max_batch: int = 64
    ) -> None:
        if not isinstance(path, bytes) and not Path(path).is_file():
            raise ExportError(f"TFLite model not found: {path}")
        self.path = None if isinstance(path, bytes) else Path(path)
        self.num_threads = num_threads
        self.max_batch = max_batch
        self._interp = make_interpreter(path, num_threads)
        self._interp.allocate_tensors()
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        shape = tuple(int(v) for v in inp["shape"])
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 1:
            raise ExportError(f"TFLite model input must be (N, S, S, 1), got {shape}")
        if int(out["shape"][-1]) != NUM_CLASSES:
            raise ExportError(f"TFLite model must output {NUM_CLASSES} classes")
        self.input_size: int = shape[1]
        self._in_index = inp["index"]
        self._out_index = out["index"]
        self._in_dtype = inp["dtype"]
        self._in_quant = inp["quantization"]
        self._out_dtype = out["dtype"]
        self._out_quant = out["quantization"]
        self._batch = shape[0]
        # A fixed batch signature (e.g. exported with batch 1) cannot always be resized.
        self._resizable = int(inp.get("shape_signature", inp["shape"])[0]) == -1

    def _set_batch(self, n: int) -> None:
        if n == self._batch:
            return
        s = self.input_size
        self._interp.resize_tensor_input(self._in_index, [n, s, s, 1])
        self._interp.allocate_tensors()
        self._batch = n

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._in_dtype != np.float32:
            scale, zero = self._in_quant
            info = np.iinfo(self._in_dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(self._in_dtype)
        self._interp.set_tensor(self._in_index, x)
        self._interp.invoke()
        y = self._interp.get_tensor(self._out_index)
        if self._out_dtype != np.float32:
            scale, zero = self._out_quant
            y = (y.astype(np.float32) - zero) * scale
        return np.array(y, dtype=np.float32)  # copy: the tensor buffer is reused

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, S, S, 1) float32 pixels in [0, 255] -> (N, 7) float32 probabilities."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if x.ndim == 3:
            x = x[..., None]
        n = len(x)
        if n == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        step = self.max_batch if self._resizable else self._batch
        outs = []
        for start in range(0, n, step):
            chunk = x[start : start + step]
            if self._resizable:
                self._set_batch(len(chunk))
            elif len(chunk) < step:  # fixed batch: pad with blank faces, drop their outputs
                pad = np.zeros((step - len(chunk), *chunk.shape[1:]), np.float32)
                outs.append(self._run(np.concatenate([chunk, pad]))[: len(chunk)])
                continue
            outs.append(self._run(chunk))
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    __call__ = predict
