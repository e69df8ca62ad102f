// The draw-a-digit page: pointer events (mouse, touch, pen) on a canvas, predictions as you draw
// (debounced), or a photo picked or dropped. Same API as any client: POST /v1/predict.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const prediction = document.getElementById("prediction");
const confidence = document.getElementById("confidence");
const bars = document.getElementById("bars");
const photo = document.getElementById("photo");
const DEBOUNCE_MS = 150;
const teach = document.getElementById("teach");
const teachStatus = document.getElementById("teach-status");
let drawing = false, last = null, timer = null, sequence = 0, pending = 0, inked = false;
let collecting = false, shown = null;  // shown: the image behind the answer on the page

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  inked = false;
  show(null);
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return { x: (event.clientX - box.left) * pad.width / box.width, y: (event.clientY - box.top) * pad.height / box.height };
}

function stroke(from, to) {
  ctx.strokeStyle = "#111";
  ctx.lineWidth = 18;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
  inked = true;
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  last = point(event);
  pad.setPointerCapture(event.pointerId);
  stroke(last, last);
  schedule();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const p = point(event);
  stroke(last, p);
  last = p;
  schedule();
});
for (const name of ["pointerup", "pointercancel"]) {
  pad.addEventListener(name, () => { drawing = false; schedule(); });
}
document.getElementById("clear").addEventListener("click", clearPad);

function schedule() {
  clearTimeout(timer);
  document.body.dataset.state = "busy";
  timer = setTimeout(() => pad.toBlob((blob) => send(blob, "pad.png")), DEBOUNCE_MS);
}

async function send(blob, name) {
  const mine = ++sequence;
  pending++;
  document.body.dataset.state = "busy";
  const form = new FormData();
  form.append("file", blob, name);
  try {
    const response = await fetch("/v1/predict", { method: "POST", body: form });
    const body = await response.json();
    if (mine !== sequence) return;  // a newer drawing is on its way
    shown = response.ok ? { blob, name } : null;
    if (response.ok) show(body[0]);
    else show({ error: body.error });
  } catch (error) {
    if (mine === sequence) show({ error: String(error) });
  } finally {
    pending--;
    if (pending === 0) document.body.dataset.state = "idle";
  }
}

function show(row) {
  bars.replaceChildren();
  teachStatus.textContent = "";
  teach.hidden = !collecting || row === null || Boolean(row.error);
  if (row === null) { prediction.textContent = "?"; confidence.textContent = ""; return; }
  if (row.error) {
    prediction.textContent = "?";
    confidence.textContent = inked || !photo.hidden ? row.error : "";
    return;
  }
  prediction.textContent = row.label;
  confidence.textContent = `${(100 * row.confidence).toFixed(1)}%` + (row.uncertain ? " · not sure" : "");
  for (const [label, p] of row.top3) {
    const item = document.createElement("li");
    item.innerHTML = `<span class="label"></span><span class="bar"><span></span></span><span class="p"></span>`;
    item.querySelector(".label").textContent = label;
    item.querySelector(".bar span").style.width = `${Math.round(100 * p)}%`;
    item.querySelector(".p").textContent = `${(100 * p).toFixed(1)}%`;
    bars.append(item);
  }
}

function readPhoto(file) {
  if (!file) return;
  photo.src = URL.createObjectURL(file);
  photo.hidden = false;
  send(file, file.name);
}

document.getElementById("file").addEventListener("change", (event) => readPhoto(event.target.files[0]));
const drop = document.getElementById("drop");
window.addEventListener("dragover", (event) => { event.preventDefault(); drop.hidden = false; });
window.addEventListener("dragleave", (event) => { if (event.target === drop) drop.hidden = true; });
window.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.hidden = true;
  readPhoto(event.dataTransfer.files[0]);
});

// serve --collect: the image on the page, saved under the label the person says it shows
async function keep(label) {
  if (!shown) return;
  const form = new FormData();
  form.append("label", label);
  form.append("file", shown.blob, shown.name);
  teachStatus.textContent = "saving…";
  try {
    const response = await fetch("/v1/collect", { method: "POST", body: form });
    const body = await response.json();
    teachStatus.textContent = response.ok
      ? `Saved as a ${body.label} for fine-tuning (${body.count} in the collection).` : body.error;
  } catch (error) {
    teachStatus.textContent = String(error);
  }
}

fetch("/healthz").then((r) => r.json()).then((h) => {
  collecting = h.collect;
  for (const label of h.model.classes) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.dataset.label = label;
    button.addEventListener("click", () => keep(label));
    document.getElementById("teach-digits").append(button);
  }
  const acc = h.model.test_accuracy === null ? "" : `, ${(100 * h.model.test_accuracy).toFixed(2)}% held-out`;
  document.getElementById("model").textContent = `model: ${h.model.run_name || h.model.checkpoint} (${h.model.dataset}${acc})`;
});
clearPad();
