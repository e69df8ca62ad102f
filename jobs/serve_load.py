"""Load test of `lenet-dist serve` on loopback: starts the server, then measures

  * one client, one image per request, requests back to back: latency p50 / p99
  * 16 concurrent clients, one image per request: images/s and latency p50 / p99
  * the same with what the draw page sends: its 280x280 RGBA canvas as PNG
  * the worst request the limits allow, 16 at once: a 40-megapixel RGBA PNG each; the server
    workers' resident memory when idle, at its peak (VmHWM) and after

Bounded: at most --requests requests and --seconds seconds per phase; it stops by itself. Only
127.0.0.1 is contacted. Writes JSON (default jobs/results/serve_load.json).

    python jobs/serve_load.py --checkpoint runs/<run>/model [--clients 16] [--requests 2000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _image(data_dir: Path) -> bytes:
    """A held-out digit as a user would upload it: dark on light, 112x112 PNG."""
    import numpy as np
    from PIL import Image

    from lenet_dist.data.datasets import MNIST
    from lenet_dist.data.tensors import read_idx

    digit = read_idx(MNIST.raw_dir(data_dir) / MNIST.files["test"][0].name, 3)[0]
    buf = io.BytesIO()
    Image.fromarray(255 - np.kron(digit, np.ones((4, 4), np.uint8))).save(buf, format="PNG")
    return buf.getvalue()


def _canvas(data_dir: Path) -> bytes:
    """What the draw page posts: a held-out digit drawn dark on a white 280x280 canvas, RGBA PNG."""
    import numpy as np
    from PIL import Image

    from lenet_dist.data.datasets import MNIST
    from lenet_dist.data.tensors import read_idx

    digit = read_idx(MNIST.raw_dir(data_dir) / MNIST.files["test"][0].name, 3)[1]
    ink = np.asarray(Image.fromarray(digit).resize((280, 280), Image.Resampling.BILINEAR))
    gray = (255 - ink.astype(np.float32) * (255 - 17) / 255).astype(np.uint8)  # #111 strokes on #fff
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


def _worst() -> bytes:
    """The largest image the default limits accept (40 megapixels) as RGBA, a digit's worth of ink."""
    import numpy as np
    from PIL import Image

    h, w = 5470, 7300
    gray = np.full((h, w), 255, np.uint8)
    gray[2000:3200, 3400:3560] = 20
    buf = io.BytesIO()
    Image.fromarray(np.dstack([gray, gray, gray, np.full_like(gray, 255)]), "RGBA").save(buf, format="PNG")
    return buf.getvalue()


def _multipart(image: bytes, port: int, boundary: str = "lenet-dist-load") -> bytes:
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return _request(port, body, boundary)


def _memory_mb(pids: list[int]) -> dict[str, float]:
    """Summed over the server's worker processes: resident now, and the peak since each started."""
    out = {"rss_mb": 0.0, "peak_rss_mb": 0.0}
    for pid in pids:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        fields = dict(line.split(":", 1) for line in lines if ":" in line)
        out["rss_mb"] += int(fields["VmRSS"].split()[0]) / 1024
        out["peak_rss_mb"] += int(fields["VmHWM"].split()[0]) / 1024
    return out


def _workers(server: int) -> list[int]:
    """The processes that hold the model: uvicorn's workers, or the server itself with one worker."""
    children = Path(f"/proc/{server}/task/{server}/children").read_text().split()
    workers = [int(c) for c in children if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]
    return workers or [server]


def _request(port: int, body: bytes, boundary: str) -> bytes:
    head = (f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary="
            f"{boundary}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body


class Client:
    """One keep-alive HTTP/1.1 connection (http.client adds Python work to every request)."""

    def __init__(self, port: int, payload: bytes):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.payload = payload

    def send(self) -> float:
        t0 = time.perf_counter()
        self.sock.sendall(self.payload)
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        while len(rest) < length:
            rest += self.sock.recv(65536)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode(errors="replace"))
        return time.perf_counter() - t0


def _phase(port: int, payload: bytes, clients: int, max_requests: int, max_seconds: float) -> dict:
    latencies: list[float] = []
    lock, stop_at = threading.Lock(), time.perf_counter() + max_seconds

    def worker() -> None:
        c = Client(port, payload)
        while time.perf_counter() < stop_at:
            with lock:
                if len(latencies) >= max_requests:
                    return
            seconds = c.send()
            with lock:
                latencies.append(seconds)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ordered = sorted(latencies)
    return {"clients": clients, "requests": len(ordered), "seconds": wall, "images_per_second": len(ordered) / wall,
            "p50_ms": 1000 * statistics.median(ordered), "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, default=REPO / "data")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--out", type=Path, default=REPO / "jobs" / "results" / "serve_load.json")
    a = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    payload = _multipart(_image(a.data_dir), port)
    server = subprocess.Popen([sys.executable, "-m", "lenet_dist", "serve", "--checkpoint", str(a.checkpoint),
                               "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                Client(port, payload).send()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        _phase(port, payload, a.clients, 200, 5)  # warm-up
        workers = _workers(server.pid)
        results = {"checkpoint": str(a.checkpoint), "workers": len(workers),
                   "single_client": _phase(port, payload, 1, a.requests, a.seconds),
                   "concurrent": _phase(port, payload, a.clients, a.requests * 4, a.seconds),
                   "page_canvas": _phase(port, _multipart(_canvas(a.data_dir), port), a.clients, a.requests * 4,
                                         a.seconds)}
        idle = _memory_mb(workers)
        worst = _multipart(_worst(), port)
        results["worst_request"] = {"image": "7300x5470 RGBA PNG (40 megapixels)", "bytes": len(worst),
                                    "idle": idle, **_phase(port, worst, a.clients, a.clients, 300)}
        time.sleep(1)
        results["worst_request"].update(after=_memory_mb(workers))
    finally:
        server.terminate()
        server.wait(timeout=20)
    for name in ("single_client", "concurrent", "page_canvas"):
        r = results[name]
        print(f"{name:13} {r['clients']:3} client(s): {r['requests']} requests in {r['seconds']:.1f} s, "
              f"{r['images_per_second']:.0f} images/s, latency p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms")
    w = results["worst_request"]
    print(f"worst request: {w['clients']} x {w['image']} ({w['bytes']:,} bytes each) in {w['seconds']:.1f} s; "
          f"workers' resident memory idle {w['idle']['rss_mb']:.0f} MB, peak {w['after']['peak_rss_mb']:.0f} MB, "
          f"after {w['after']['rss_mb']:.0f} MB")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
