"""Load benchmark of the HTTP API, on this machine's loopback only.

``python -m fer_study benchmark-serve`` starts ``python -m fer_study serve`` on a free
127.0.0.1 port in a child process (or uses ``--url`` of one already running there), then:

1. warms it up;
2. ``POST /v1/predict`` from N concurrent clients for a fixed time, for each N of
   ``--clients`` (default 4 then 8): client-side latency p50/p95/p99, throughput, errors;
3. streams over ``WS /v1/stream`` from one client for a fixed time, keeping two frames in
   flight as the browser page does: results per second, latency, frames dropped;
4. sends every kind of bad upload and records the status and message of each answer;
5. samples the server's resident memory (RSS) every half second throughout.

Every loop is bounded in time and count, and only loopback addresses are accepted.  The
frame is a 640x480 JPEG with one real face (scikit-image's astronaut photo), the same for
every request.  Results go to ``reports/results/benchmark_serve.json``.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fer_study.errors import FerStudyError
from fer_study.serve.load_clients import (
    run_bad_uploads,
    run_predict_clients,
    run_stream_client,
)
from fer_study.serve.samples import multipart_body, sample_jpeg

LOOPBACK = ("127.0.0.1", "localhost", "::1")
TARGETS = {
    "predict_p95_ms_at_4_clients": 30.0,
    "stream_fps_1_client": 30.0,
    "failed_requests": 0,
}
# Memory "does not grow" when the last samples of a phase are within this of its first.
MEMORY_GROWTH_LIMIT_MB = 10.0


class LoadTestError(FerStudyError, RuntimeError):
    """The benchmark could not run (server did not start, not a loopback URL...)."""


# --------------------------------------------------------------------------- helpers


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_loopback(url: str) -> tuple[str, int]:
    """(host, port) of ``url``; refuses anything but this machine's loopback."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host not in LOOPBACK and not host.startswith("127."):
        raise LoadTestError(f"{url}: the load test only targets this machine (127.0.0.1)")
    return host, parts.port or 80


class RssSampler:
    """The server process's resident memory, sampled in a background thread."""

    def __init__(self, pid: int | None, interval: float = 0.5) -> None:
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MB)
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.perf_counter()

    def now_mb(self) -> float | None:
        if self._pid is None:
            return None
        import psutil

        try:
            return psutil.Process(self._pid).memory_info().rss / 2**20
        except psutil.Error:
            return None

    def start(self) -> RssSampler:
        def loop() -> None:
            while not self._stop.wait(self._interval):
                mb = self.now_mb()
                if mb is not None:
                    self.samples.append((time.perf_counter() - self._t0, mb))

        if self._pid is not None:
            self._thread = threading.Thread(target=loop, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def cpu_s(self) -> float | None:
        """CPU seconds (user + system) the server has used so far."""
        if self._pid is None:
            return None
        import psutil

        try:
            t = psutil.Process(self._pid).cpu_times()
        except psutil.Error:
            return None
        return t.user + t.system

    def mark(self) -> float:
        return time.perf_counter() - self._t0

    def window(self, t0: float, t1: float) -> list[float]:
        return [mb for t, mb in self.samples if t0 <= t <= t1]


def memory_growth(samples_mb: Sequence[float], edge: int = 4) -> dict[str, Any]:
    """Start (median of the first ``edge`` samples), end (of the last), growth, max."""
    if len(samples_mb) < 2 * edge:
        return {"samples": len(samples_mb), "start_mb": None, "end_mb": None,
                "growth_mb": None, "max_mb": None, "grows": None}
    start = statistics.median(samples_mb[:edge])
    end = statistics.median(samples_mb[-edge:])
    return {
        "samples": len(samples_mb),
        "start_mb": round(start, 1),
        "end_mb": round(end, 1),
        "growth_mb": round(end - start, 1),
        "max_mb": round(max(samples_mb), 1),
        "grows": bool(end - start > MEMORY_GROWTH_LIMIT_MB),
    }


# --------------------------------------------------------------------------- server


def wait_healthy(host: str, port: int, timeout_s: float = 180.0,
                 alive: Callable[[], bool] = lambda: True) -> dict[str, Any]:
    """Poll ``GET /healthz`` until it answers 200; returns its JSON."""
    deadline = time.perf_counter() + timeout_s
    last = "no answer"
    while time.perf_counter() < deadline:
        if not alive():
            raise LoadTestError("the server process exited before it was ready")
        conn = http.client.HTTPConnection(host, port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 200:
                return json.loads(body)
            last = f"HTTP {resp.status}"
        except (OSError, http.client.HTTPException) as exc:
            last = str(exc)
        finally:
            conn.close()
        time.sleep(0.25)
    raise LoadTestError(f"the server at {host}:{port} did not become healthy: {last}")


@contextmanager
def serve_process(port: int, serve_args: Sequence[str] = (), log_path: Path | None = None):
    """``python -m fer_study serve`` on 127.0.0.1:``port`` as a child; yields the Popen."""
    cmd = [sys.executable, "-m", "fer_study", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", *serve_args]
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path:
            log.close()


def _machine() -> dict[str, Any]:
    import psutil

    from fer_study.provenance import cpu_model

    trainers = 0
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if "fer_study" in cmd and " train" in cmd:
            trainers += 1
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "other_fer_study_training_processes": trainers,
    }


def run_benchmark(
    url: str | None = None,
    clients: Sequence[int] = (4, 8),
    duration_s: float = 30.0,
    stream_duration_s: float = 20.0,
    warmup: int = 200,
    serve_args: Sequence[str] = (),
    note: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every phase against ``url`` (or a server started here); returns the results."""
    from fer_study.provenance import git_commit

    def say(text: str) -> None:
        if progress:
            print(text, file=sys.stderr, flush=True)

    jpeg = sample_jpeg()
    body, ctype = multipart_body(jpeg)
    out: dict[str, Any] = {
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": git_commit(),
        "machine": _machine(),
        "note": note,
        "frame": {"width": 640, "height": 480, "faces": 1, "format": "JPEG",
                  "bytes": len(jpeg), "source": "scikit-image astronaut, one face ~150 px",
                  "request": "multipart/form-data, field 'file'"},
        "targets": dict(TARGETS),
    }
    if url:
        host, port = check_loopback(url)
        server: Any = nullcontext(None)
    else:
        host, port = "127.0.0.1", free_port()
        server = serve_process(port, serve_args)
    with server as proc:
        pid = proc.pid if proc is not None else None
        say(f"waiting for the server on {host}:{port} ...")
        out["server"] = wait_healthy(
            host, port, alive=(lambda: proc.poll() is None) if proc else (lambda: True)
        )
        out["server"]["started_by_benchmark"] = url is None
        out["server"]["args"] = list(serve_args)
        rss = RssSampler(pid).start()
        marks = {"after_start": _round(rss.now_mb())}
        try:
            # Warm up at the highest concurrency: worker threads and their allocator arenas
            # are created once, so the phases measure steady state.
            say(f"warm-up: {warmup} requests from {max(clients)} clients")
            run_predict_clients(host, port, body, ctype, max(clients), 120.0,
                                max_requests=warmup)
            marks["after_warmup"] = _round(rss.now_mb())
            load_t0 = rss.mark()
            phases: dict[str, Any] = {}
            for n in clients:
                say(f"POST /v1/predict: {n} clients for {duration_s:.0f} s")
                t0, cpu0 = rss.mark(), rss.cpu_s()
                res = run_predict_clients(host, port, body, ctype, n, duration_s)
                res["server_rss"] = memory_growth(rss.window(t0, rss.mark()))
                res["server_cpu_ms_per_request"] = _per_item(cpu0, rss.cpu_s(),
                                                             res["requests_ok"])
                phases[f"predict_{n}_clients"] = res
                marks[f"after_predict_{n}_clients"] = _round(rss.now_mb())
                say(f"  {res['requests_ok']} ok, {res['errors']} errors, "
                    f"p50 {res['latency_ms']['p50']} ms, p95 {res['latency_ms']['p95']} ms, "
                    f"{res['throughput_rps']} req/s, server p50 {res['server_ms']['p50']} ms, "
                    f"{res['server_cpu_ms_per_request']} CPU ms/request")
            say(f"WS /v1/stream: 1 client for {stream_duration_s:.0f} s")
            t0, cpu0 = rss.mark(), rss.cpu_s()
            res = run_stream_client(host, port, jpeg, stream_duration_s)
            res["server_rss"] = memory_growth(rss.window(t0, rss.mark()))
            res["server_cpu_ms_per_frame"] = _per_item(cpu0, rss.cpu_s(), res["results"])
            phases["stream_1_client"] = res
            marks["after_stream_1_client"] = _round(rss.now_mb())
            out["rss_mb_load_phases"] = memory_growth(rss.window(load_t0, rss.mark()))
            say(f"  {res['fps']} FPS, p50 {res['latency_ms']['p50']} ms, "
                f"dropped {res['dropped_by_server']}, "
                f"{res['server_cpu_ms_per_frame']} CPU ms/frame")
            out["phases"] = phases
            say("bad uploads")
            max_bytes = int(out["server"].get("max_upload_bytes") or 10 * 2**20)
            out["bad_uploads"] = run_bad_uploads(host, port, max_bytes)
            marks["after_bad_uploads"] = _round(rss.now_mb())
        finally:
            rss.stop()
        out["rss_mb"] = marks
        # Every 2 s, to see the whole run's memory at a glance.
        out["rss_timeline_mb"] = [[round(t, 1), round(mb, 1)] for t, mb in rss.samples[::4]]
    out["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out["target_check"] = check_targets(out)
    return out


def _per_item(cpu0: float | None, cpu1: float | None, n: int) -> float | None:
    """Server CPU milliseconds per answered request: its cost, whatever else runs."""
    if cpu0 is None or cpu1 is None or n <= 0:
        return None
    return round((cpu1 - cpu0) * 1000 / n, 2)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def check_targets(res: dict[str, Any]) -> dict[str, Any]:
    """Each target of the issue: the measured value and whether it was met."""
    phases = res.get("phases", {})
    checks: dict[str, Any] = {}
    p4 = phases.get("predict_4_clients")
    if p4:
        v = p4["latency_ms"]["p95"]
        lim = TARGETS["predict_p95_ms_at_4_clients"]
        checks["predict_p95_ms_at_4_clients"] = {"value": v, "target": f"<= {lim}",
                                                 "met": v is not None and v <= lim}
    st = phases.get("stream_1_client")
    if st:
        lim = TARGETS["stream_fps_1_client"]
        checks["stream_fps_1_client"] = {"value": st["fps"], "target": f">= {lim}",
                                         "met": st["fps"] is not None and st["fps"] >= lim}
    failed = sum(p.get("errors", 0) for p in phases.values())
    checks["failed_requests"] = {"value": failed, "target": "== 0", "met": failed == 0}
    bad = res.get("bad_uploads")
    if bad is not None:
        checks["bad_uploads_answered_4xx_with_message"] = {
            "value": f"{sum(b['ok'] for b in bad)} of {len(bad)}",
            "target": "all",
            "met": all(b["ok"] for b in bad),
        }
    load = res.get("rss_mb_load_phases") or {}
    grows = [p["server_rss"]["grows"] for p in phases.values() if "server_rss" in p]
    checks["memory_does_not_grow"] = {
        "value": {"load_phases_growth_mb": load.get("growth_mb"),
                  "per_phase_growth_mb": [p["server_rss"]["growth_mb"]
                                          for p in phases.values() if "server_rss" in p]},
        "target": f"growth <= {MEMORY_GROWTH_LIMIT_MB} MB over the load phases and within each",
        "met": bool(grows) and not any(g is None or g for g in grows) and not load.get("grows"),
    }
    return checks


def write_results(res: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    from fer_study.provenance import write_json

    return write_json(path, res)
