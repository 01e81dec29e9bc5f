"""The FastAPI application: REST + WebSocket API and the browser page.

Endpoints (OpenAPI docs at ``/docs``, served from local files, no CDN):

* ``POST /v1/predict`` - one image (multipart field ``file``, or the raw bytes as the body)
  -> faces with boxes, probabilities, top emotion, model id, timings; ``?gradcam=true``
  adds a Grad-CAM overlay PNG per face;
* ``WS /v1/stream`` - binary JPEG (or PNG/WebP) frames in, one JSON result per processed
  frame out; see :func:`create_app`'s stream handler for the protocol;
* ``GET /healthz``, ``GET /v1/model``, ``GET /`` (the webcam page, ``static/``).

Safe by default: the upload limit is enforced while the body arrives (a 1 GB body is not
read to find out it is too big), images are checked by :mod:`fer_study.serve.uploads`
before decoding, no endpoint takes a path, CORS is off unless origins are given, and
WebSocket connections from another site's page are refused (browsers do not apply CORS to
WebSockets, so without that check any site could drive the API through a visitor's
browser).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.lowlevel
from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.websockets import WebSocketDisconnect

from fer_study import __version__
from fer_study.serve.engine import Engine, EngineConfig
from fer_study.serve.schemas import (
    ERROR_RESPONSES,
    HealthResponse,
    ModelInfo,
    PredictResponse,
)
from fer_study.serve.uploads import ApiError, UploadError

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file itself
# The page's policy: everything from this server, nothing from anywhere else.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
    "connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


@dataclass
class ServeConfig:
    """Server options on top of the engine's (CLI: ``python -m fer_study serve``)."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    cors_origins: tuple[str, ...] = ()  # none: CORS off (same-origin only)
    max_pending: int = 32  # POSTs waiting or running at once; more get 503
    smoothing: float = 0.5  # streams: weight of the newest frame in the tracker's average


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _too_large(n_bytes: int, max_bytes: int) -> UploadError:
    return UploadError(
        413,
        "payload_too_large",
        f"the upload is over the limit of {max_bytes:,} bytes ({max_bytes / 2**20:.0f} MiB): "
        f"{n_bytes:,} bytes so far",
    )


async def _read_capped(request: Request, cap: int, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it is over ``cap`` bytes (the image
    limit ``max_bytes`` plus room for a form's boundaries)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", "the Content-Length header is not a number") \
                from None
        if n > cap:
            raise _too_large(n, max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:  # a chunked body has no Content-Length to check up front
            raise _too_large(size, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


async def _upload_bytes(request: Request, max_bytes: int) -> bytes:
    """The image of a POST: a multipart ``file`` field, or the raw body."""
    ctype = request.headers.get("content-type", "")
    multipart = ctype.startswith("multipart/form-data")
    body = await _read_capped(
        request, max_bytes + (MULTIPART_SLACK if multipart else 0), max_bytes
    )
    if not multipart:
        return body  # the format is judged from the bytes, never from the content type

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
    except Exception as exc:  # malformed multipart: starlette raises HTTP or parser errors
        detail = getattr(exc, "detail", None) or str(exc)
        raise UploadError(422, "bad_multipart", f"cannot parse the form: {detail}") from exc
    try:
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise UploadError(
                422, "no_file", "the form has no file: send the image in a field named 'file'"
            )
        upload = form.get("file") if isinstance(form.get("file"), UploadFile) else files[0]
        return await upload.read()
    finally:
        await form.close()


def _origin_allowed(headers: Any, allowed: tuple[str, ...]) -> bool:
    """Same-origin (or listed) browser pages, and any non-browser client (no Origin)."""
    origin = headers.get("origin")
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    return urlsplit(origin).netloc.lower() == (headers.get("host") or "").lower()


class LatestFrame:
    """A one-frame mailbox: a new frame replaces one not yet taken (counted as dropped).

    This is the stream's back-pressure: a client sending faster than the server can
    process never builds a queue; the newest frame is always the next one processed.
    """

    def __init__(self) -> None:
        self._item: tuple[int, bytes] | None = None
        self._event = anyio.Event()
        self.closed = False
        self.received = 0
        self.dropped = 0

    def put(self, data: bytes) -> None:
        if self._item is not None:
            self.dropped += 1
        self._item = (self.received, data)
        self.received += 1
        self._event.set()

    def close(self) -> None:
        self.closed = True
        self._event.set()

    async def get(self) -> tuple[int, bytes] | None:
        """The newest frame (seq, bytes), or None once closed and empty."""
        while self._item is None:
            if self.closed:
                return None
            await self._event.wait()
            self._event = anyio.Event()
        item, self._item = self._item, None
        return item


def create_app(config: ServeConfig | None = None, engine: Engine | None = None) -> FastAPI:
    """The application; builds the engine (loads the model) unless one is given."""
    config = config or ServeConfig()
    engine = engine or Engine(config.engine)
    limits = engine.config.limits
    app = FastAPIOffline(
        title="fer-study",
        version=__version__,
        description=(
            "Facial emotion recognition on images and live video. Probabilities are over "
            "the seven FER2013 emotions. `WS /v1/stream`: send binary JPEG frames, receive "
            "one JSON result per processed frame (the PredictResponse fields plus `seq`, "
            "`received`, `dropped`); frames arriving while one is processed replace each "
            "other, so only the newest waits."
        ),
        redoc_url=None,
        static_url="/docs-static",
    )
    app.state.engine = engine
    app.state.pending = 0
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        ]
        return _error(422, "invalid_request", "; ".join(errors))

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html",
            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
        )

    @app.get("/healthz", response_model=HealthResponse, tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the model is loaded and the server answers."""
        return {
            "status": "ok",
            "model_id": engine.model_id,
            "workers": engine.workers,
            "detector": engine.detector_name,
            "max_upload_bytes": limits.max_bytes,
            "uptime_s": round(time.time() - engine.started, 1),
        }

    @app.get("/v1/model", response_model=ModelInfo, tags=["model"])
    async def model_info() -> dict[str, Any]:
        """Name, labels, input size, accuracy and provenance of the served model (from the
        JSON written when it was shipped)."""
        return engine.info

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        responses=ERROR_RESPONSES,
        tags=["predict"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": f"a JPEG, PNG or WebP image, at most {limits.max_bytes:,} bytes",
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                            "required": ["file"],
                        }
                    },
                    **{
                        t: {"schema": {"type": "string", "format": "binary"}}
                        for t in ("image/jpeg", "image/png", "image/webp")
                    },
                },
            }
        },
    )
    async def predict(
        request: Request,
        gradcam: bool = Query(False, description="add a Grad-CAM overlay PNG per face"),
    ) -> dict[str, Any]:
        """Detect the faces of one image and classify their emotions."""
        if app.state.pending >= config.max_pending:
            raise ApiError(503, "busy", "too many requests in flight; retry shortly")
        app.state.pending += 1
        try:
            data = await _upload_bytes(request, limits.max_bytes)
            return await anyio.to_thread.run_sync(engine.predict, data, gradcam)
        finally:
            app.state.pending -= 1

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        """Frames in (binary messages), results out (JSON text messages), one session.

        A receiver task keeps only the newest unprocessed frame (:class:`LatestFrame`); a
        processor task runs it through this connection's tracking pipeline in a worker
        thread and sends the result with ``seq`` (0-based index of the frame among those
        received), ``received`` and ``dropped`` counts.  A bad frame gets an error message
        ``{"error", "message", "seq"}`` and the stream goes on.
        """
        if not _origin_allowed(ws.headers, config.cors_origins):
            await ws.close(code=1008, reason="cross-origin WebSocket refused")
            return
        await ws.accept()
        session = engine.stream(config.smoothing)
        mailbox = LatestFrame()

        async def receive() -> None:
            try:
                while True:
                    msg = await ws.receive()
                    if msg["type"] == "websocket.disconnect":
                        return
                    data = msg.get("bytes")
                    if data is None:
                        notice = {
                            "error": "text_frame",
                            "message": "send frames as binary messages (JPEG bytes)",
                        }
                        await ws.send_text(json.dumps(notice))
                        continue
                    mailbox.put(data)
                    # Let the processor take it before the next message is read: frames
                    # already buffered would otherwise replace each other in one go.
                    await anyio.lowlevel.checkpoint()
            finally:
                mailbox.close()

        async def process() -> None:
            while (item := await mailbox.get()) is not None:
                seq, data = item
                try:
                    result = await anyio.to_thread.run_sync(session.process, data)
                except ApiError as exc:
                    result = {"error": exc.code, "message": exc.message}
                except Exception as exc:  # a server bug must not end the stream silently
                    log.exception("stream frame %d failed", seq)
                    result = {"error": "internal_error", "message": str(exc)}
                result.update(seq=seq, received=mailbox.received, dropped=mailbox.dropped)
                try:
                    await ws.send_text(json.dumps(result))
                except (WebSocketDisconnect, RuntimeError, OSError):
                    return  # the client left while this frame was processed

        async with anyio.create_task_group() as tg:
            tg.start_soon(process)
            try:
                await receive()
            except (WebSocketDisconnect, RuntimeError, OSError):
                pass  # the connection broke
            tg.cancel_scope.cancel()  # client gone: the frame in progress is not sent

    return app
