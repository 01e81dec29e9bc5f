"""The load benchmark's clients (:mod:`fer_study.serve.loadtest`): concurrent
``POST /v1/predict`` clients, one ``WS /v1/stream`` client and the bad-upload prober, each
bounded in time and count, each returning its latencies as percentiles."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fer_study.serve.samples import bad_uploads

__all__ = ["percentiles", "run_bad_uploads", "run_predict_clients", "run_stream_client"]


def percentiles(values_ms: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/mean/max of latencies in ms (None when there are none)."""
    if not values_ms:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    a = np.asarray(values_ms, np.float64)
    return {
        "p50": round(float(np.percentile(a, 50)), 2),
        "p95": round(float(np.percentile(a, 95)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "mean": round(float(a.mean()), 2),
        "max": round(float(a.max()), 2),
    }


@dataclass
class PhaseResult:
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    faces: list[int] = field(default_factory=list)


def _post(conn: http.client.HTTPConnection, body: bytes, ctype: str) -> tuple[int, bytes]:
    conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": ctype})
    resp = conn.getresponse()
    return resp.status, resp.read()


def run_predict_clients(
    host: str, port: int, body: bytes, ctype: str, clients: int, duration_s: float,
    max_requests: int = 1_000_000,
) -> dict[str, Any]:
    """``clients`` threads posting ``body`` back to back for ``duration_s`` seconds."""
    results = [PhaseResult() for _ in range(clients)]
    deadline = time.perf_counter() + duration_s
    budget = threading.Semaphore(max_requests)

    def client(res: PhaseResult) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            while time.perf_counter() < deadline and budget.acquire(blocking=False):
                t0 = time.perf_counter()
                try:
                    status, payload = _post(conn, body, ctype)
                except (OSError, http.client.HTTPException) as exc:
                    res.errors.append(f"{type(exc).__name__}: {exc}")
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=30)
                    continue
                dt = (time.perf_counter() - t0) * 1000
                if status != 200:
                    res.errors.append(f"HTTP {status}: {payload[:200]!r}")
                    continue
                answer = json.loads(payload)
                res.latencies_ms.append(dt)
                res.server_ms.append(answer["timings_ms"]["total"])
                res.faces.append(len(answer["faces"]))
        finally:
            conn.close()

    t_start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(r,), daemon=True) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t_start
    lat = [x for r in results for x in r.latencies_ms]
    errors = [e for r in results for e in r.errors]
    faces = [f for r in results for f in r.faces]
    return {
        "clients": clients,
        "duration_s": round(elapsed, 2),
        "requests_ok": len(lat),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "throughput_rps": round(len(lat) / elapsed, 2) if elapsed > 0 else None,
        "latency_ms": percentiles(lat),
        # The server's own time per request (decode to JSON), without queueing or transport.
        "server_ms": percentiles([x for r in results for x in r.server_ms]),
        "faces_per_response": {
            str(int(k)): int(v) for k, v in zip(*np.unique(faces, return_counts=True), strict=True)
        },
    }


def run_stream_client(
    host: str, port: int, frame: bytes, duration_s: float, in_flight: int = 2
) -> dict[str, Any]:
    """One WebSocket client sending ``frame`` with ``in_flight`` frames outstanding."""
    from websockets.sync.client import connect

    latencies: list[float] = []
    server_ms: list[float] = []
    errors: list[str] = []
    sent: dict[int, float] = {}
    last: dict[str, Any] = {}
    url = f"ws://{host}:{port}/v1/stream"
    t_start = time.perf_counter()
    deadline = t_start + duration_s
    with connect(url, max_size=2**24, open_timeout=30) as ws:
        seq = 0
        while time.perf_counter() < deadline:
            while len(sent) < in_flight:
                sent[seq] = time.perf_counter()
                ws.send(frame)
                seq += 1
            msg = json.loads(ws.recv(timeout=30))
            now = time.perf_counter()
            for s in [s for s in sent if s < msg.get("seq", -1)]:  # skipped by the server
                del sent[s]
            t0 = sent.pop(msg.get("seq", -1), None)
            if "error" in msg:
                errors.append(f"{msg['error']}: {msg.get('message')}")
            elif t0 is not None:
                latencies.append((now - t0) * 1000)
                server_ms.append(msg["timings_ms"]["total"])
                last = msg
        elapsed = time.perf_counter() - t_start
        while sent:  # collect the answers still owed, so the server ends idle
            msg = json.loads(ws.recv(timeout=30))
            for s in [s for s in sent if s <= msg.get("seq", -1)]:
                del sent[s]
    return {
        "clients": 1,
        "in_flight": in_flight,
        "duration_s": round(elapsed, 2),
        "frames_sent": seq,
        "results": len(latencies),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "dropped_by_server": last.get("dropped"),
        "fps": round(len(latencies) / elapsed, 2) if elapsed > 0 else None,
        "latency_ms": percentiles(latencies),
        "server_ms": percentiles(server_ms),
        "faces_last_frame": len(last.get("faces", [])),
    }


def run_bad_uploads(host: str, port: int, max_bytes: int) -> list[dict[str, Any]]:
    """POST every bad upload; record status, error code and message."""
    out = []
    for case, body, ctype in bad_uploads(max_bytes):
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            status, payload = _post(conn, body, ctype)
            try:
                info = json.loads(payload)
            except json.JSONDecodeError:
                info = {"error": None, "message": payload[:200].decode("latin-1")}
        except (OSError, http.client.HTTPException) as exc:
            status, info = None, {"error": type(exc).__name__, "message": str(exc)}
        finally:
            conn.close()
        out.append(
            {
                "case": case,
                "bytes": len(body),
                "status": status,
                "error": info.get("error"),
                "message": info.get("message"),
                "ok": status is not None and 400 <= status < 500 and bool(info.get("message")),
            }
        )
    return out
