"""The ``serve`` and ``benchmark-serve`` subcommands (argparse only: imports stay light)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
import sys
from typing import Any

from fer_study.serve.uploads import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the server; returns the exit code (2 on a handled error)."""
    import cv2

    try:
        import uvicorn

        from fer_study.serve.app import ServeConfig, create_app
        from fer_study.serve.engine import EngineConfig, RealtimeError
        from fer_study.serve.uploads import UploadLimits
    except ModuleNotFoundError as exc:
        print(f"error: {exc.name} is missing: pip install -e . (or pip install fastapi "
              f"'uvicorn[standard]' python-multipart fastapi-offline)", file=sys.stderr)
        return 2
    if args.ssl_certfile and not args.ssl_keyfile:
        print("error: --ssl-certfile needs --ssl-keyfile", file=sys.stderr)
        return 2
    cv2.setNumThreads(args.threads)  # OpenCV's pool would otherwise take every core
    limits = UploadLimits(
        max_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=args.max_pixels,
        max_side=args.max_side,
    )
    engine = EngineConfig(
        model=args.model,
        detector=args.detector,
        yunet_model=args.yunet_model,
        min_face=args.min_face,
        margin=args.margin,
        workers=args.workers,
        gradcam=not args.no_gradcam,
        limits=limits,
    )
    config = ServeConfig(
        engine=engine,
        cors_origins=tuple(args.cors_origin or ()),
        max_pending=args.max_pending,
        smoothing=args.smoothing,
    )
    try:
        app = create_app(config)
    except RealtimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not _is_loopback(args.host):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can use "
              "the API (there is no authentication). Browsers allow the camera only on "
              "https:// or localhost pages: give --ssl-certfile/--ssl-keyfile for phones.",
              file=sys.stderr)
    scheme = "https" if args.ssl_certfile else "http"
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"fer-study: open {scheme}://{shown}:{args.port}/ (API docs at /docs)",
          file=sys.stderr)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        ws_max_size=limits.max_bytes + 1024,
        server_header=False,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    return 0


def cmd_benchmark_serve(args: argparse.Namespace) -> int:
    """Run the load benchmark and write its JSON; returns the exit code."""
    from fer_study.serve.loadtest import LoadTestError, run_benchmark, write_results

    serve_args = shlex.split(args.serve_args or "")
    try:
        res = run_benchmark(
            url=args.url,
            clients=args.clients,
            duration_s=args.duration,
            stream_duration_s=args.stream_duration,
            warmup=args.warmup,
            serve_args=serve_args,
            note=args.note,
        )
    except LoadTestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    res["command"] = "python -m fer_study benchmark-serve " + shlex.join(sys.argv[2:]) \
        if sys.argv[1:2] == ["benchmark-serve"] else None
    path = write_results(res, args.output)
    print(f"wrote {path}", file=sys.stderr)
    for name, check in res["target_check"].items():
        print(f"  {name}: {check['value']} (target {check['target']}): "
              f"{'met' if check['met'] else 'NOT met'}", file=sys.stderr)
    return 0


def add_serve_subcommands(subparsers: Any) -> None:
    """Register ``serve`` and ``benchmark-serve`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "serve",
        help="REST + WebSocket API and a browser webcam page",
        description="Serve the emotion recogniser over HTTP: POST /v1/predict, "
        "WS /v1/stream, GET /v1/model, GET /healthz, the page at / and docs at /docs.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; "
                        "0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--model", help=".tflite or .keras classifier (default: the shipped model)")
    p.add_argument("--detector", choices=("haar", "yunet"),
                   help="face detector (default: the pipeline's default)")
    p.add_argument("--yunet-model", help="YuNet .onnx file (default: the pipeline's search)")
    p.add_argument("--min-face", type=int, help="smallest face in pixels (Haar)")
    p.add_argument("--margin", type=float, help="crop margin per side, fraction of the box")
    p.add_argument("--workers", type=int, default=1,
                   help="frames processed at once, one detector each (default: 1)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                   help="OpenCV threads (default: %(default)s)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_BYTES / 2**20,
                   help="largest accepted upload or frame, MiB (default: %(default)g)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="largest accepted image, pixels (default: %(default)s)")
    p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                   help="longest accepted image side, pixels (default: %(default)s)")
    p.add_argument("--max-pending", type=int, default=32,
                   help="POSTs in flight before answering 503 (default: 32)")
    p.add_argument("--smoothing", type=float, default=0.5,
                   help="streams: weight of the newest frame in a face's average "
                        "(1 = no smoothing; default: 0.5)")
    p.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                   help="allow browser pages from ORIGIN (repeatable; default: none)")
    p.add_argument("--no-gradcam", action="store_true", help="refuse ?gradcam=true")
    p.add_argument("--ssl-certfile", help="serve https:// with this certificate (PEM)")
    p.add_argument("--ssl-keyfile", help="the certificate's private key (PEM)")
    p.add_argument("--log-level", default="info",
                   choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=cmd_serve)

    b = subparsers.add_parser(
        "benchmark-serve",
        help="load-test the HTTP API on 127.0.0.1 and write a results JSON",
        description="Start `serve` on a free 127.0.0.1 port (or use --url), load it with "
        "concurrent POSTs and a WebSocket stream, send bad uploads, record latency, "
        "throughput, errors and server memory.",
    )
    b.add_argument("--url", help="a server already running on this machine (127.0.0.1 only)")
    b.add_argument("--clients", type=int, nargs="+", default=[4, 8],
                   help="concurrent POST clients, one phase each (default: 4 8)")
    b.add_argument("--duration", type=float, default=30.0,
                   help="seconds per POST phase (default: 30)")
    b.add_argument("--stream-duration", type=float, default=20.0,
                   help="seconds of WebSocket streaming (default: 20)")
    b.add_argument("--warmup", type=int, default=200,
                   help="warm-up requests, at the highest concurrency (default: 200)")
    b.add_argument("--serve-args", help="extra `serve` options for the server started here, "
                                        "e.g. \"--workers 2\"")
    b.add_argument("--note", help="free text recorded in the JSON (e.g. what else ran)")
    b.add_argument("--output", default="reports/results/benchmark_serve.json",
                   help="results JSON (default: %(default)s)")
    b.set_defaults(func=cmd_benchmark_serve)
