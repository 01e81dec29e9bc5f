// fer-study browser page: webcam frames over a WebSocket, results drawn on a canvas, and an
// upload form for still images. Plain JavaScript, no build step, nothing from other hosts.
"use strict";

(() => {
  const EMOTIONS = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"];
  // The same colours as the OpenCV overlay of fer_study.realtime (there in BGR order).
  const COLORS = {
    Angry: [230, 40, 40], Disgust: [40, 140, 40], Fear: [160, 60, 160], Happy: [250, 200, 40],
    Sad: [40, 120, 200], Surprise: [250, 140, 40], Neutral: [190, 190, 190],
  };
  const MAX_IN_FLIGHT = 2; // frames sent but not answered: one processed, one waiting
  const CAPTURE_WIDTH = 640; // frames are scaled down to this width before sending
  const JPEG_QUALITY = 0.8;

  const $ = (id) => document.getElementById(id);
  const video = $("video");
  const live = $("live");
  const liveCtx = live.getContext("2d");
  const capture = document.createElement("canvas");

  // Exposed for people debugging the page and for the browser test.
  const state = (window.ferState = {
    sent: 0, results: 0, dropped: 0, errors: [], fps: 0, latencyMs: null,
    lastResult: null, lastDrawn: null, cameraError: null, wsOpen: false,
  });

  let ws = null;
  let running = false;
  let outstanding = 0; // frames being encoded, in flight or waiting at the server
  const pending = new Map(); // seq -> {t, bitmap}: what was sent, to draw with its result
  const resultTimes = [];
  let pumpTimer = null;

  const rgb = (c) => `rgb(${c[0]},${c[1]},${c[2]})`;
  const colorOf = (emotion) => COLORS[emotion] || [255, 255, 255];

  // ------------------------------------------------------------------ drawing

  function drawFaces(ctx, faces, scale) {
    const drawn = [];
    const rowH = 13, nameW = 54, barW = 70, pad = 4;
    const panelW = nameW + barW + 2 * pad, panelH = EMOTIONS.length * rowH + 2 * pad;
    ctx.save();
    ctx.textBaseline = "middle";
    for (const f of faces) { // panels first, boxes and labels on top
      const x = f.box.x * scale, y = f.box.y * scale, w = f.box.w * scale;
      let px = x + w + 6;
      if (px + panelW > ctx.canvas.width) px = Math.max(0, x - 6 - panelW);
      const py = Math.max(0, Math.min(y, ctx.canvas.height - panelH));
      ctx.fillStyle = "rgba(25,25,25,0.85)";
      ctx.fillRect(px, py, panelW, panelH);
      ctx.font = "11px system-ui, sans-serif";
      EMOTIONS.forEach((e, j) => {
        const ry = py + pad + j * rowH;
        ctx.fillStyle = "#eee";
        ctx.fillText(e, px + pad, ry + rowH / 2);
        ctx.fillStyle = "#464646";
        ctx.fillRect(px + pad + nameW, ry + 2, barW, rowH - 4);
        ctx.fillStyle = rgb(colorOf(e));
        ctx.fillRect(px + pad + nameW, ry + 2, barW * (f.probs[e] || 0), rowH - 4);
      });
    }
    for (const f of faces) {
      const x = f.box.x * scale, y = f.box.y * scale, w = f.box.w * scale, h = f.box.h * scale;
      const color = colorOf(f.emotion);
      ctx.strokeStyle = rgb(color);
      ctx.lineWidth = 3;
      ctx.strokeRect(x, y, w, h);
      const text = `${f.emotion} ${Math.round(f.confidence * 100)}%`;
      ctx.font = "bold 16px system-ui, sans-serif";
      const tw = ctx.measureText(text).width;
      const ty = y - 24 >= 0 ? y - 24 : y + h + 2;
      ctx.fillStyle = rgb(color);
      ctx.fillRect(x - 1.5, ty, tw + 10, 22);
      ctx.fillStyle = color[0] + color[1] + color[2] > 300 ? "#141414" : "#f5f5f5";
      ctx.fillText(text, x + 4, ty + 11);
      drawn.push({ x, y, w, h, color, label: f.emotion,
                   labelRect: { x: x - 1.5, y: ty, w: tw + 10, h: 22 } });
    }
    ctx.restore();
    return drawn;
  }

  function listFaces(ul, faces) {
    ul.replaceChildren(...faces.map((f) => {
      const li = document.createElement("li");
      li.textContent = `${f.emotion} ${Math.round(f.confidence * 100)}%`;
      li.dataset.emotion = f.emotion;
      li.style.background = rgb(colorOf(f.emotion));
      return li;
    }));
  }

  // ------------------------------------------------------------------ live camera

  function setLiveStatus(text, isError = false) {
    $("live-status").textContent = text;
    $("live-status").className = isError ? "error" : "muted";
  }

  function pump() {
    while (running && ws && ws.readyState === WebSocket.OPEN && outstanding < MAX_IN_FLIGHT
           && video.readyState >= 2 && video.videoWidth > 0) {
      outstanding++;
      captureAndSend().catch((err) => {
        outstanding--;
        state.errors.push(String(err));
      });
    }
  }

  async function captureAndSend() {
    const w = Math.min(CAPTURE_WIDTH, video.videoWidth);
    const h = Math.round((video.videoHeight * w) / video.videoWidth);
    const bitmap = await createImageBitmap(video, { resizeWidth: w, resizeHeight: h });
    capture.width = w;
    capture.height = h;
    capture.getContext("2d").drawImage(bitmap, 0, 0);
    const blob = await new Promise((resolve) => capture.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
    if (!running || !ws || ws.readyState !== WebSocket.OPEN || !blob) {
      bitmap.close();
      outstanding--;
      return;
    }
    const seq = state.sent++; // the server numbers binary messages in the same order
    pending.set(seq, { t: performance.now(), bitmap });
    ws.send(blob);
  }

  function onResult(ev) {
    const r = JSON.parse(ev.data);
    if (r.seq === undefined) { // a notice about the connection, not about a frame
      state.errors.push(r.message || String(ev.data));
      return;
    }
    for (const [seq, p] of pending) { // frames the server skipped for newer ones
      if (seq < r.seq) {
        p.bitmap.close();
        pending.delete(seq);
        outstanding--;
      }
    }
    const p = pending.get(r.seq);
    pending.delete(r.seq);
    outstanding = Math.max(0, outstanding - 1);
    const now = performance.now();
    if (r.error) {
      state.errors.push(r.message);
      setLiveStatus(`frame ${r.seq}: ${r.message}`, true);
    } else if (p) {
      state.results++;
      state.lastResult = r;
      state.dropped = r.dropped;
      state.latencyMs = now - p.t;
      resultTimes.push(now);
      while (resultTimes.length && now - resultTimes[0] > 1000) resultTimes.shift();
      state.fps = resultTimes.length;
      if (live.width !== p.bitmap.width || live.height !== p.bitmap.height) {
        live.width = p.bitmap.width;
        live.height = p.bitmap.height;
      }
      liveCtx.drawImage(p.bitmap, 0, 0);
      const boxes = drawFaces(liveCtx, r.faces, 1);
      state.lastDrawn = { boxes, width: live.width, height: live.height };
      listFaces($("faces"), r.faces);
      $("fps").textContent = String(state.fps);
      $("latency").textContent = state.latencyMs.toFixed(0);
      $("server-ms").textContent = r.timings_ms.total.toFixed(1);
      $("dropped").textContent = String(r.dropped);
    }
    if (p) p.bitmap.close();
    pump();
  }

  async function start() {
    if (running) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      state.cameraError = "no camera API";
      setLiveStatus("This browser gives no camera access here: only pages served over " +
                    "https or from localhost may use it (see the README). The upload form " +
                    "still works.", true);
      return;
    }
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false,
      });
    } catch (err) {
      state.cameraError = `${err.name}: ${err.message}`;
      setLiveStatus(`Cannot open the camera (${err.name}): ${err.message}`, true);
      return;
    }
    video.srcObject = media;
    await video.play();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    ws = new WebSocket(`${scheme}://${location.host}/v1/stream`);
    ws.onopen = () => {
      state.wsOpen = true;
      setLiveStatus("Streaming.");
      pump();
    };
    ws.onmessage = onResult;
    ws.onclose = (ev) => {
      state.wsOpen = false;
      if (running) setLiveStatus(`Connection closed (${ev.code} ${ev.reason || ""}).`, true);
      stop();
    };
    ws.onerror = () => state.errors.push("websocket error");
    running = true;
    pumpTimer = setInterval(pump, 100); // restarts the loop if the video was not ready yet
    $("start").disabled = true;
    $("stop").disabled = false;
  }

  function stop() {
    running = false;
    clearInterval(pumpTimer);
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close();
    ws = null;
    const media = video.srcObject;
    if (media) media.getTracks().forEach((t) => t.stop());
    video.srcObject = null;
    for (const p of pending.values()) p.bitmap.close();
    pending.clear();
    outstanding = 0;
    $("start").disabled = false;
    $("stop").disabled = true;
  }

  // ------------------------------------------------------------------ still images

  async function analyse(event) {
    event.preventDefault();
    const file = $("file").files[0];
    const status = $("upload-status");
    if (!file) return;
    status.className = "muted";
    status.textContent = "analysing…";
    const form = new FormData();
    form.append("file", file);
    let r, resp;
    try {
      resp = await fetch(`/v1/predict?gradcam=${$("gradcam").checked}`, { method: "POST", body: form });
      r = await resp.json();
    } catch (err) {
      status.className = "error";
      status.textContent = `request failed: ${err}`;
      return;
    }
    if (!resp.ok) {
      status.className = "error";
      status.textContent = `${resp.status}: ${r.message || r.error}`;
      return;
    }
    const bitmap = await createImageBitmap(file);
    const canvas = $("still");
    const scale = Math.min(1, 640 / bitmap.width);
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    drawFaces(ctx, r.faces, scale);
    canvas.hidden = false;
    listFaces($("still-faces"), r.faces);
    $("gradcams").replaceChildren(...r.faces.filter((f) => f.gradcam).map((f) => {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.src = `data:image/png;base64,${f.gradcam.png_base64}`;
      img.alt = `Grad-CAM for ${f.gradcam.explains}`;
      const cap = document.createElement("figcaption");
      cap.textContent = `${f.gradcam.explains} (${f.gradcam.layer})`;
      fig.append(img, cap);
      return fig;
    }));
    const n = r.faces.length;
    status.textContent = `${n} face${n === 1 ? "" : "s"} in ${r.image.width}x${r.image.height}, ` +
      `${r.timings_ms.total.toFixed(1)} ms on the server`;
  }

  async function showModel() {
    try {
      const m = await (await fetch("/v1/model")).json();
      const acc = m.accuracy && m.accuracy.PrivateTest && m.accuracy.PrivateTest.none;
      $("model-info").textContent = `Model: ${m.name} (${m.id})` +
        (acc !== undefined ? `, FER2013 PrivateTest accuracy ${(acc * 100).toFixed(1)}%` : "") +
        (m.calibrated ? ", calibrated probabilities" : "");
    } catch (err) {
      $("model-info").textContent = `model information unavailable: ${err}`;
    }
  }

  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  $("upload-form").addEventListener("submit", analyse);
  showModel();
  if (new URLSearchParams(location.search).has("autostart")) start();
})();
