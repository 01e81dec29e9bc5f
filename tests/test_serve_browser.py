"""The web page in a real browser: headless Chromium with a fake camera showing a real face.

`python -m fer_study serve` runs as a child process on a free 127.0.0.1 port; Chromium's
fake camera plays a .y4m video made from scikit-image's astronaut photo.  The test waits
until the page has streamed frames over the WebSocket and drawn a box and an emotion label
on its canvas (checked pixel by pixel), then analyses a still image through the upload form
with Grad-CAM, and saves a screenshot (``build/test-artifacts/serve_page.png``, or under
``$FER_STUDY_TEST_ARTIFACTS``).

Needs Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them when it
runs as root with apt) and the ``selenium`` package.  Missing, the test fails saying so;
``FER_STUDY_SKIP_BROWSER_TESTS=1`` skips it on purpose.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_study.labels import EMOTIONS
from fer_study.serve.loadtest import free_port, serve_process, wait_healthy
from fer_study.serve.samples import sample_frame

OPT_OUT = "FER_STUDY_SKIP_BROWSER_TESTS"
ARTIFACTS = Path(
    os.environ.get("FER_STUDY_TEST_ARTIFACTS")
    or Path(__file__).resolve().parents[1] / "build" / "test-artifacts"
)
# Flags for a closed network: without the background-networking ones Chromium waits on
# refused connections (updates, sync, field trials) and the page never loads.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1150",
    "--use-fake-ui-for-media-stream",  # grant the camera without asking
    "--use-fake-device-for-media-stream",
)


def _missing(what: str) -> None:
    pytest.fail(
        f"{what}: install Debian's chromium and chromium-driver (`apt-get install -y chromium "
        f"chromium-driver`; `make test` does it when run as root) and `pip install -e .[test]`"
        f", or set {OPT_OUT}=1 to skip the browser test on purpose"
    )


@pytest.fixture(scope="module")
def browser_paths() -> tuple[str, str]:
    if os.environ.get(OPT_OUT) == "1":
        pytest.skip(f"{OPT_OUT}=1: browser test skipped on request")
    chromium = os.environ.get("FER_STUDY_CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    driver = os.environ.get("FER_STUDY_CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium:
        _missing("Chromium not found")
    if not driver:
        _missing("chromedriver not found")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing("the selenium package is not installed")
    return chromium, driver


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 30) -> Path:
    """Raw 4:2:0 video (YUV4MPEG2), the format Chromium's fake camera plays."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    port = free_port()
    with serve_process(port, log_path=log) as proc:
        try:
            wait_healthy("127.0.0.1", port, alive=lambda: proc.poll() is None)
        except Exception:
            pytest.fail(f"the server did not start:\n{log.read_text()[-3000:]}")
        yield f"http://127.0.0.1:{port}", log


@pytest.fixture(scope="module")
def driver(browser_paths, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_paths
    d = tmp_path_factory.mktemp("browser")
    base = sample_frame()
    # A face drifting a few pixels per frame, as a person in front of a camera does.
    frames = [np.roll(base, (2 * (i % 5), 3 * (i % 5)), axis=(0, 1)) for i in range(10)]
    video = write_y4m(d / "face.y4m", frames)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={d / 'profile'}")
    opts.add_argument(f"--use-file-for-fake-video-capture={video}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def _state(drv) -> str:
    try:
        logs = drv.get_log("browser")
    except Exception:  # not every driver keeps logs
        logs = []
    return f"ferState={drv.execute_script('return JSON.stringify(window.ferState)')}\n{logs}"


def test_page_streams_the_camera_and_draws_faces(server, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, log = server
    driver.get(f"{url}/?autostart")
    try:
        WebDriverWait(driver, 120, poll_frequency=0.25).until(
            lambda d: d.execute_script(
                "const s = window.ferState; return s && s.results >= 5 && s.lastDrawn "
                "&& s.lastDrawn.boxes.length > 0"
            )
        )
    except Exception:
        pytest.fail(f"no face drawn from the fake camera\n{_state(driver)}\n"
                    f"server log:\n{log.read_text()[-2000:]}")
    # One synchronous read: the canvas and what the page says it drew on it.
    drawn = driver.execute_script("""
        const s = window.ferState, b = s.lastDrawn.boxes[0];
        const ctx = document.getElementById('live').getContext('2d');
        const edge = Array.from(ctx.getImageData(Math.round(b.x), Math.round(b.y + b.h / 2),
                                                 1, 1).data);
        const L = b.labelRect;
        const label = ctx.getImageData(Math.round(L.x + 3), Math.round(L.y + 2),
                                       Math.floor(L.w - 6), Math.floor(L.h - 4)).data;
        let ink = 0, fill = 0;
        for (let i = 0; i < label.length; i += 4) {
          const d = Math.abs(label[i] - b.color[0]) + Math.abs(label[i + 1] - b.color[1])
                  + Math.abs(label[i + 2] - b.color[2]);
          if (d <= 6) fill++; else ink++;
        }
        return {box: b, edge, ink, fill, faces: s.lastResult.faces.length,
                fps: s.fps, latency: s.latencyMs, errors: s.errors};
    """)
    box = drawn["box"]
    assert drawn["faces"] == 1
    assert box["label"] in EMOTIONS
    assert np.abs(np.array(drawn["edge"][:3]) - box["color"]).max() <= 2, drawn
    # The label's coloured background is there, and text was written on it.
    assert drawn["fill"] > 50 and drawn["ink"] > 20, drawn
    shown = driver.execute_script(  # the list is rebuilt per frame: read it in one go
        "return Array.from(document.querySelectorAll('#faces li'), li => li.textContent)"
    )
    assert shown and shown[0].split()[0] in EMOTIONS
    assert driver.find_element(By.ID, "fps").text not in ("", "–")
    assert not drawn["errors"], drawn["errors"]


def test_upload_form_with_gradcam(server, driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image = tmp_path / "face.jpg"
    cv2.imwrite(str(image), sample_frame())
    driver.find_element(By.ID, "file").send_keys(str(image))
    driver.find_element(By.ID, "gradcam").click()
    driver.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    # The first Grad-CAM loads TensorFlow in the server: allow for it.
    try:
        WebDriverWait(driver, 180, poll_frequency=0.5).until(
            lambda d: d.execute_script(
                "const img = document.querySelector('#gradcams img');"
                "return img && img.complete && img.naturalWidth > 0"
            )
        )
    except Exception:
        status = driver.find_element(By.ID, "upload-status").text
        pytest.fail(f"no Grad-CAM shown; status: {status}\n{_state(driver)}")
    labels = [li.text.split()[0] for li in driver.find_elements(By.CSS_SELECTOR, "#still-faces li")]
    assert len(labels) == 1 and labels[0] in EMOTIONS
    assert "1 face in 640x480" in driver.find_element(By.ID, "upload-status").text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "serve_page.png"
    assert driver.save_screenshot(str(shot))
    assert cv2.imread(str(shot)) is not None
