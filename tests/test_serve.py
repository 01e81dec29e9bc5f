"""HTTP API: every endpoint, every bad upload, the WebSocket stream, a short real load.

One engine (the shipped model) serves every app of this module, as one serves a process.
The test frame is a real face (scikit-image's astronaut, ~150 px) that both detectors find.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from fer_study.export import DEFAULT_MODEL_META
from fer_study.labels import EMOTIONS
from fer_study.serve import app as serve_app
from fer_study.serve.app import LatestFrame, ServeConfig, create_app
from fer_study.serve.engine import Engine, EngineConfig
from fer_study.serve.load_clients import run_bad_uploads, run_predict_clients, run_stream_client
from fer_study.serve.loadtest import check_targets, free_port, memory_growth
from fer_study.serve.samples import bad_uploads, multipart_body, sample_frame, sample_jpeg
from fer_study.serve.uploads import UploadError, UploadLimits, decode_image, sniff_format

EXPECTED_BAD = {  # case -> (status, error code)
    "zero_bytes": (422, "empty_upload"),
    "not_an_image": (415, "unsupported_media_type"),
    "gif_not_accepted": (415, "unsupported_media_type"),
    "truncated_jpeg": (422, "corrupt_image"),
    "truncated_png": (422, "corrupt_image"),
    "decompression_bomb_png": (422, "image_too_large"),
    "huge_dimensions_jpeg": (422, "image_too_large"),
    "over_size_limit": (413, "payload_too_large"),
}


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(EngineConfig())


@pytest.fixture(scope="module")
def client(engine):
    with TestClient(create_app(ServeConfig(), engine)) as c:
        yield c


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    return sample_jpeg()


@pytest.fixture(scope="module")
def bad_cases() -> dict[str, tuple[bytes, str]]:
    return {name: (body, ctype) for name, body, ctype in bad_uploads(10 * 2**20)}


def encode(frame: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame[:, :, ::-1])).save(buf, format=fmt, **kw)
    return buf.getvalue()


def assert_one_face(body: dict, width: int = 640, height: int = 480) -> dict:
    assert body["image"] == {"width": width, "height": height, "format": body["image"]["format"]}
    assert len(body["faces"]) == 1, body["faces"]
    face = body["faces"][0]
    b = face["box"]
    # The head is pasted in the middle of the frame (sample_frame): the box is there.
    assert 0.25 * width < b["x"] + b["w"] / 2 < 0.75 * width
    assert 0.2 * height < b["y"] + b["h"] / 2 < 0.8 * height
    assert 80 <= b["w"] <= 260
    probs = face["probs"]
    assert list(probs) == list(EMOTIONS)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
    assert face["emotion"] == max(probs, key=probs.get)
    assert face["confidence"] == pytest.approx(max(probs.values()), abs=1e-5)
    return face


# --------------------------------------------------------------------------- uploads


def test_sniff_format_judges_content_not_names():
    assert sniff_format(sample_jpeg()) == "JPEG"
    assert sniff_format(encode(sample_frame(), "PNG")) == "PNG"
    assert sniff_format(encode(sample_frame(), "WEBP")) == "WEBP"
    assert sniff_format(b"GIF89a....") is None
    assert sniff_format(b"") is None


def test_decode_refuses_large_dimensions_before_decoding(monkeypatch):
    data = sample_jpeg()
    with pytest.raises(UploadError) as err:
        decode_image(data, UploadLimits(max_side=639))
    assert (err.value.status, err.value.code) == (422, "image_too_large")
    assert "640x480" in err.value.message
    with pytest.raises(UploadError):
        decode_image(data, UploadLimits(max_pixels=640 * 480 - 1))

    # "Before decoding": the pixel decoder is never reached for an over-limit image.
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(UploadError):
        decode_image(data, UploadLimits(max_side=100))


def test_decode_applies_exif_orientation():
    upright = sample_frame()
    stored = np.ascontiguousarray(np.rot90(upright))  # 90 degrees counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img = decode_image(encode(stored, "JPEG", exif=exif, quality=95))
    assert (img.width, img.height) == (640, 480)
    assert np.abs(img.bgr.astype(int) - upright.astype(int)).mean() < 4  # JPEG noise only


# --------------------------------------------------------------------------- endpoints


def test_healthz(client, engine):
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["model_id"] == engine.model_id
    assert body["max_upload_bytes"] == 10 * 2**20


def test_model_info_comes_from_the_shipped_json(client):
    r = client.get("/v1/model")
    assert r.status_code == 200
    info = r.json()
    meta = json.loads(DEFAULT_MODEL_META.read_text())
    assert info["labels"] == list(EMOTIONS)
    assert info["input_size"] == meta["input_size"]
    assert info["name"] == meta["model"]
    assert info["calibrated"] == ("calibration" in meta)
    acc = meta["metrics"]["PrivateTest"]["none"]["accuracy"]
    assert info["accuracy"]["PrivateTest"]["none"] == pytest.approx(acc, abs=1e-4)
    assert info["provenance"]["data"]["sha256"] == meta["data"]["sha256"]
    assert info["id"].startswith("default_model.tflite@sha256:")
    # The shipped JSON names the trainer's folders; the API must not pass them on.
    assert '"/' not in json.dumps(info)


def test_predict_multipart(client, engine, jpeg):
    r = client.post("/v1/predict", files={"file": ("face.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"id": engine.model_id, "calibrated": engine.calibrated}
    assert body["image"]["format"] == "JPEG"
    face = assert_one_face(body)
    assert "raw_probs" not in face and "gradcam" not in face
    t = body["timings_ms"]
    assert {"decode", "detect", "classify", "total"} <= set(t)
    assert t["total"] >= t["detect"] >= 0


def test_predict_raw_body_png_and_webp_agree(client, jpeg):
    frame = sample_frame()
    ref = client.post("/v1/predict", files={"file": ("x", jpeg)}).json()["faces"][0]
    raw = client.post("/v1/predict", content=jpeg, headers={"content-type": "image/jpeg"})
    assert raw.status_code == 200
    assert raw.json()["faces"][0]["probs"] == ref["probs"]
    for fmt, kw in (("PNG", {}), ("WEBP", {"lossless": True})):
        # The content type is wrong on purpose: the server judges the bytes.
        r = client.post("/v1/predict", content=encode(frame, fmt, **kw),
                        headers={"content-type": "application/octet-stream"})
        assert r.status_code == 200, r.text
        assert r.json()["image"]["format"] == fmt
        assert assert_one_face(r.json())["emotion"] == ref["emotion"]


def test_predict_image_without_faces(client):
    blank = encode(np.full((240, 320, 3), 128, np.uint8), "PNG")
    r = client.post("/v1/predict", files={"file": ("blank.png", blank, "image/png")})
    assert r.status_code == 200
    assert r.json()["faces"] == []


@pytest.mark.parametrize("case", sorted(EXPECTED_BAD))
def test_bad_uploads_get_4xx_with_a_message(client, bad_cases, case):
    body, ctype = bad_cases[case]
    for kwargs in ({"content": body, "headers": {"content-type": ctype}},
                   {"files": {"file": ("upload", body, ctype)}}):
        r = client.post("/v1/predict", **kwargs)
        status, code = EXPECTED_BAD[case]
        assert r.status_code == status, r.text
        assert r.json()["error"] == code
        assert len(r.json()["message"]) > 10


def test_upload_limit_applies_while_a_chunked_body_arrives(engine):
    small = Engine(EngineConfig(limits=UploadLimits(max_bytes=50_000)))
    sent = []

    def chunks():  # no Content-Length: the server must count as the body arrives
        for _ in range(100):
            sent.append(1)
            yield b"\xff\xd8\xff" + b"\x00" * 9_997

    with TestClient(create_app(ServeConfig(), small)) as c:
        r = c.post("/v1/predict", content=chunks(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large"
    assert "50,000" in r.json()["message"]


def test_multipart_without_a_file(client):
    form = (b'--b0\r\nContent-Disposition: form-data; name="note"\r\n\r\nno file here\r\n'
            b"--b0--\r\n")
    r = client.post("/v1/predict", content=form,
                    headers={"content-type": "multipart/form-data; boundary=b0"})
    assert r.status_code == 422
    assert r.json()["error"] == "no_file"
    r = client.post("/v1/predict", content=b"--x\r\nbroken",
                    headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code in (400, 422)
    assert r.json()["message"]


def test_errors_are_json(client):
    r = client.get("/nowhere")
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    r = client.post("/v1/predict?gradcam=maybe", content=b"")
    assert (r.status_code, r.json()["error"]) == (422, "invalid_request")
    assert "gradcam" in r.json()["message"]


def test_busy_server_answers_503(engine, jpeg):
    with TestClient(create_app(ServeConfig(max_pending=0), engine)) as c:
        r = c.post("/v1/predict", content=jpeg)
    assert r.status_code == 503
    assert r.json()["error"] == "busy"


def test_gradcam_heatmap_per_face(client, jpeg):
    r = client.post("/v1/predict?gradcam=true", files={"file": ("face.jpg", jpeg)})
    assert r.status_code == 200, r.text
    face = assert_one_face(r.json())
    cam = face["gradcam"]
    assert cam["explains"] == face["emotion"]
    png = base64.b64decode(cam["png_base64"])
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (cam["size"], cam["size"], 3)
    assert cam["peak"] == pytest.approx(1.0, abs=0.02)  # normalised, and not all zero
    # The heat is drawn in colour over the grey face: somewhere red and blue differ.
    assert np.abs(img[:, :, 2].astype(int) - img[:, :, 0]).max() > 60
    assert "member0_" in cam["layer"]  # each member of the shipped model, by name
    assert r.json()["timings_ms"]["gradcam"] > 0


def test_gradcam_refused_when_off(jpeg):
    off = Engine(EngineConfig(gradcam=False))
    with TestClient(create_app(ServeConfig(), off)) as c:
        r = c.post("/v1/predict?gradcam=true", content=jpeg)
        assert (r.status_code, r.json()["error"]) == (501, "gradcam_unavailable")
        assert c.post("/v1/predict", content=jpeg).status_code == 200


def test_concurrent_requests_share_the_model_safely(jpeg):
    """Threads hammering one engine get exactly the answer a lone request gets.

    With 3 workers, detections run in parallel and reach the one classifier together
    (without its lock the TFLite interpreter raises or mixes batches up)."""
    engine = Engine(EngineConfig(workers=3))
    ref = engine.predict(jpeg)["faces"][0]["probs"]
    blank = encode(np.zeros((200, 200, 3), np.uint8), "PNG")
    out: list = []

    def work(i: int) -> None:
        for _ in range(6):
            # Interleave images with no face so batches of different sizes race.
            if i % 2:
                out.append(engine.predict(blank)["faces"] == [])
            else:
                out.append(engine.predict(jpeg)["faces"][0]["probs"] == ref)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 36 and all(out)


# --------------------------------------------------------------------------- page and docs


def test_page_and_static_files_are_local(client):
    r = client.get("/")
    assert r.status_code == 200
    assert "/static/app.js" in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    # No CDN: nothing in the page's files points at another host.
    for f in Path(serve_app.STATIC_DIR).iterdir():
        urls = re.findall(r"[\w$]*://[^\s\"'`]*", f.read_text())
        assert set(urls) <= {"://${location.host}/v1/stream"}, (f.name, urls)
        assert 'src="//' not in f.read_text() and 'href="//' not in f.read_text()


def test_docs_are_served_without_a_cdn(client):
    r = client.get("/docs")
    assert r.status_code == 200
    assert "cdn." not in r.text
    js = [part.split('"')[0] for part in r.text.split('src="')[1:]]
    assert js and all(s.startswith("/") for s in js)
    assert client.get(js[0]).status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/healthz", "/v1/model", "/v1/predict"} <= set(paths)
    body = paths["/v1/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "image/jpeg" in body


def test_cors_is_off_unless_configured(client, engine):
    pre = {"origin": "http://elsewhere.example", "access-control-request-method": "POST"}
    r = client.options("/v1/predict", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    cfg = ServeConfig(cors_origins=("http://elsewhere.example",))
    with TestClient(create_app(cfg, engine)) as c:
        r = c.options("/v1/predict", headers=pre)
    assert r.headers["access-control-allow-origin"] == "http://elsewhere.example"


# --------------------------------------------------------------------------- stream


def test_stream_round_trip_tracks_faces(client, jpeg):
    frames = [jpeg, encode(sample_frame(), "JPEG", quality=70), jpeg]
    results = []
    with client.websocket_connect("/v1/stream") as ws:
        for f in frames:
            ws.send_bytes(f)
            results.append(ws.receive_json())
        ws.send_text("not a frame")
        assert ws.receive_json()["error"] == "text_frame"
        ws.send_bytes(b"not an image")
        bad = ws.receive_json()
        assert (bad["error"], bad["seq"]) == ("unsupported_media_type", 3)
        ws.send_bytes(jpeg)  # the stream goes on after a bad frame
        results.append(ws.receive_json())
    assert [r["seq"] for r in results] == [0, 1, 2, 4]
    tracks = {r["faces"][0]["track_id"] for r in results}
    assert len(tracks) == 1  # the same face, followed across frames
    second = results[1]["faces"][0]
    assert second["raw_probs"] != second["probs"]  # smoothed with the first frame
    assert assert_one_face(results[0])["probs"] == results[0]["faces"][0]["raw_probs"]


def test_stream_drops_stale_frames_instead_of_queueing(client, engine, jpeg):
    with client.websocket_connect("/v1/stream") as ws:
        with engine.detector():  # hold the only detector: the server cannot keep up
            for _ in range(6):
                ws.send_bytes(jpeg)
            ws.send_text("sync")  # answered by the receiver once it has read all 6 frames
            assert ws.receive_json()["error"] == "text_frame"
        results = [ws.receive_json()]
        while results[-1]["seq"] != 5:
            results.append(ws.receive_json())
    last = results[-1]
    assert last["received"] == 6
    assert len(results) <= 2  # at most the frame in progress and the newest one
    assert last["dropped"] == 6 - len(results)


def test_latest_frame_mailbox():
    import anyio

    async def main():
        box = LatestFrame()
        for i in range(4):
            box.put(bytes([i]))
        first = await box.get()
        box.put(b"\x09")
        box.close()
        return first, await box.get(), await box.get(), box.dropped

    assert anyio.run(main) == ((3, b"\x03"), (4, b"\x09"), None, 3)


def test_stream_refuses_other_sites_pages(client):
    with pytest.raises(WebSocketDisconnect) as err:
        with client.websocket_connect("/v1/stream", headers={"origin": "http://evil.example"}):
            pass
    assert err.value.code == 1008
    with client.websocket_connect("/v1/stream", headers={"origin": "http://testserver"}) as ws:
        ws.send_bytes(sample_jpeg())
        assert len(ws.receive_json()["faces"]) == 1


# --------------------------------------------------------------------------- real server


@pytest.fixture(scope="module")
def live_server(engine):
    """The app on uvicorn on a free 127.0.0.1 port, in a thread."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(create_app(ServeConfig(), engine), host="127.0.0.1", port=port,
                            log_level="warning", ws_max_size=engine.config.limits.max_bytes)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=10)


def test_short_load_over_real_sockets(live_server, jpeg):
    host, port = live_server
    body, ctype = multipart_body(jpeg)
    res = run_predict_clients(host, port, body, ctype, clients=4, duration_s=60,
                              max_requests=24)
    assert res["errors"] == 0, res["error_examples"]
    assert res["requests_ok"] == 24
    assert res["faces_per_response"] == {"1": 24}
    st = run_stream_client(host, port, jpeg, duration_s=1.0)
    assert st["errors"] == 0 and st["results"] >= 1 and st["faces_last_frame"] == 1
    bad = run_bad_uploads(host, port, 10 * 2**20)
    assert {b["case"]: (b["status"], b["error"]) for b in bad} == EXPECTED_BAD
    assert all(b["ok"] for b in bad)


def test_memory_growth_and_targets_summary():
    flat = memory_growth([200.0] * 10 + [201.0] * 10)
    assert flat["growth_mb"] == 1.0 and flat["grows"] is False
    leak = memory_growth([200.0 + i for i in range(40)])
    assert leak["grows"] is True
    assert memory_growth([1.0, 2.0])["grows"] is None  # too few samples to say
    res = {
        "phases": {
            "predict_4_clients": {"errors": 0, "latency_ms": {"p95": 31.0}, "server_rss": flat},
            "stream_1_client": {"errors": 0, "fps": 40.0, "server_rss": flat},
        },
        "bad_uploads": [{"ok": True}, {"ok": False}],
        "rss_mb_load_phases": flat,
    }
    checks = check_targets(res)
    assert checks["predict_p95_ms_at_4_clients"]["met"] is False
    assert checks["stream_fps_1_client"]["met"] is True
    assert checks["failed_requests"]["met"] is True
    assert checks["bad_uploads_answered_4xx_with_message"]["met"] is False
    assert checks["memory_does_not_grow"]["met"] is True
    res["rss_mb_load_phases"] = leak  # flat within phases, growing across them
    assert check_targets(res)["memory_does_not_grow"]["met"] is False
    res["phases"]["stream_1_client"]["errors"] = 2
    assert check_targets(res)["failed_requests"] == {"value": 2, "target": "== 0", "met": False}


def test_readme_line_reads_the_serve_benchmark(tmp_path):
    from fer_study.readme import readme_results

    flat = memory_growth([950.0] * 8)
    res = {
        "command": "python -m fer_study benchmark-serve --duration 30",
        "machine": {"load_average_at_start": [1.5, 1.0, 1.0], "logical_cores": 2},
        "server": {"detector": "HaarDetector", "workers": 1},
        "frame": {"width": 640, "height": 480},
        "phases": {
            "predict_4_clients": {"clients": 4, "errors": 0, "throughput_rps": 120.5,
                                  "latency_ms": {"p50": 21.5, "p95": 28.25},
                                  "server_cpu_ms_per_request": 8.5, "server_rss": flat},
            "stream_1_client": {"errors": 0, "fps": 44.4, "latency_ms": {"p50": 19.0},
                                "server_rss": flat},
        },
        "bad_uploads": [{"ok": True}] * 8,
        "rss_mb_load_phases": flat,
    }
    res["target_check"] = check_targets(res)
    text = readme_results({"benchmark_serve": res}, tmp_path)
    line = next(ln for ln in text.splitlines() if ln.startswith("**Serving benchmark**"))
    assert "`python -m fer_study benchmark-serve --duration 30`" in line
    assert "from 4 clients: p50 21.5 ms, p95 28.25 ms, 120.5 requests/s" in line
    assert "44.4 FPS" in line and "0 failed requests" in line and "8 of 8" in line
    assert "Targets not met" not in line
    res["phases"]["predict_4_clients"]["latency_ms"]["p95"] = 31.0
    res["target_check"] = check_targets(res)
    text = readme_results({"benchmark_serve": res}, tmp_path)
    assert "Targets not met: predict_p95_ms_at_4_clients." in text


def test_cli_reports_bad_options_without_starting(tmp_path, capsys):
    from fer_study.cli import main

    assert main(["serve", "--model", str(tmp_path / "missing.tflite")]) == 2
    assert "model file not found" in capsys.readouterr().err
    # The load test only ever targets this machine: refused before any request is sent.
    assert main(["benchmark-serve", "--url", "http://192.0.2.1:8000"]) == 2
    assert "only targets this machine" in capsys.readouterr().err
    assert main(["serve", "--ssl-certfile", "cert.pem"]) == 2
    assert "--ssl-keyfile" in capsys.readouterr().err
