"""`lenet-dist serve` as a user meets it: a real server process, the real page in Debian's Chromium
(driven by Selenium), digits drawn on the canvas as pointer strokes, a photo picked and dropped."""

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lenet_dist.data.datasets import MNIST
from lenet_dist.data.tensors import read_idx
from lenet_dist.inference.preprocess import load_image

from ..conftest import REPO, cli_env, free_port, run_cli

pytestmark = pytest.mark.slow
ARTIFACTS = REPO / "artifacts"


REQUEST_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> Path:
    """Where the page's corrections go (serve --collect)."""
    return tmp_path_factory.mktemp("collected")


@pytest.fixture(scope="module")
def served(model_dir: Path, collected: Path, tmp_path_factory):
    """The server's URL and its log file."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "lenet_dist", "serve", "--checkpoint", str(model_dir),
                                 "--port", str(port), "--request-timeout", str(REQUEST_TIMEOUT_S),
                                 "--collect", str(collected), "--collect-max", "5"], env=cli_env(),
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
                if json.load(r)["status"] == "ready":
                    break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError(f"the server never became ready: {log.read_text()}")
    yield url, log
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def server(served) -> str:
    return served[0]


def _post(url: str, files: list[Path]) -> list[dict]:
    boundary = "lenet-dist-test-boundary"
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{f.name}"\r\n'
                    f"Content-Type: application/octet-stream\r\n\r\n".encode() + f.read_bytes() + b"\r\n"
                    for f in files) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}/v1/predict", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)


def test_the_api_answers_what_predict_answers(server: str, model_dir: Path, mnist_dir: Path, tmp_path: Path):
    run_cli("data", "samples", tmp_path / "photos", "--n", "12", "--style", "paper", "--data-dir", mnist_dir,
            cwd=tmp_path)
    files = sorted((tmp_path / "photos").glob("0*"))
    cli = json.loads(run_cli("predict", *files, "--checkpoint", model_dir, "--json", cwd=tmp_path).stdout)
    api = _post(server, files)
    assert [r["label"] for r in api] == [r["label"] for r in cli]
    assert [r["confidence"] for r in api] == pytest.approx([r["confidence"] for r in cli], abs=1e-5)
    assert [r["uncertain"] for r in api] == [r["uncertain"] for r in cli]


def _chromium(*extra_args: str):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test: apt-get install chromium chromium-driver (.ci/run does)")
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,700", *extra_args):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture(scope="module")
def browser():
    b = _chromium()
    yield b
    b.quit()


def _wait_idle(browser, timeout: float = 15) -> str:
    deadline = time.time() + timeout
    time.sleep(0.3)  # past the debounce
    while time.time() < deadline:
        if browser.execute_script("return document.body.dataset.state") == "idle":
            return browser.find_element("id", "prediction").text
        time.sleep(0.05)
    raise AssertionError("the page never finished predicting")


def _draw(browser, digit: np.ndarray) -> None:
    """The digit as pen strokes: one pointer stroke per run of ink along each of its 28 rows."""
    from selenium.webdriver.common.action_chains import ActionChains

    pad = browser.find_element("id", "pad")
    cell = pad.size["width"] / 28
    actions = ActionChains(browser, duration=0)
    for y, row in enumerate(digit > 100):
        xs = np.flatnonzero(row)
        for run in np.split(xs, np.flatnonzero(np.diff(xs) > 1) + 1) if len(xs) else []:
            top = (y + 0.5) * cell - pad.size["height"] / 2
            actions.move_to_element_with_offset(pad, (run[0] + 0.5) * cell - pad.size["width"] / 2, top)
            actions.click_and_hold().move_to_element_with_offset(pad, (run[-1] + 0.5) * cell - pad.size["width"] / 2,
                                                                  top).release()
    actions.perform()


def test_digits_drawn_on_the_page_are_read(browser, server: str, mnist_dir: Path, tmp_path: Path):
    images = read_idx(MNIST.raw_dir(mnist_dir) / MNIST.files["test"][0].name, 3)[100:110]
    labels = read_idx(MNIST.raw_dir(mnist_dir) / MNIST.files["test"][1].name, 1)[100:110]
    browser.get(server)
    assert browser.find_element("id", "prediction").text == "?"
    read = []
    for digit in images:
        browser.find_element("id", "clear").click()
        _draw(browser, digit)
        read.append(_wait_idle(browser))
    assert sum(r == str(label) for r, label in zip(read, labels, strict=True)) >= 9, (read, labels.tolist())
    assert len(browser.find_elements("css selector", "#bars li")) == 3, "the top-3 as bars"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "serve-page.png"))


def _teach(browser, label: str) -> str:
    """Tap `label` under the answer; the line the page shows once it is saved."""
    browser.find_element("css selector", f'#teach-digits button[data-label="{label}"]').click()
    deadline = time.time() + 15
    while time.time() < deadline:
        status = browser.find_element("id", "teach-status").text
        if status and status != "saving…":
            return status
        time.sleep(0.05)
    raise AssertionError("the page never said whether the drawing was kept")


def test_a_wrong_answer_is_corrected_on_the_page_into_the_folder_finetune_reads(browser, server: str,
                                                                                collected: Path, mnist_dir: Path):
    images = read_idx(MNIST.raw_dir(mnist_dir) / MNIST.files["test"][0].name, 3)[120:123]
    browser.get(server)
    assert not browser.find_element("id", "teach").is_displayed(), "nothing to correct before an answer"
    for n, digit in enumerate(images, 1):
        browser.find_element("id", "clear").click()
        _draw(browser, digit)
        _wait_idle(browser)
        assert browser.find_element("id", "teach").is_displayed()
        assert _teach(browser, "4") == f"Saved as a 4 for fine-tuning ({n} in the collection)."
    kept = sorted((collected / "4").glob("*.png"))
    assert len(kept) == 3 and [p.name for p in collected.iterdir() if p.is_dir()] == ["4"], "under their label"
    drawn = load_image(kept[0])  # predict reads what was kept
    assert drawn.shape == (28, 28) and drawn.max() > 0.9
    for _ in range(2):  # --collect-max 5: the sixth is refused, and the page says so
        _teach(browser, "4")
    assert "is full (5 images)" in _teach(browser, "4")
    assert len(list((collected / "4").glob("*.png"))) == 5
    browser.find_element("id", "clear").click()
    assert not browser.find_element("id", "teach").is_displayed()


def test_a_photo_can_be_picked_or_dropped(browser, server: str, mnist_dir: Path, tmp_path: Path):
    run_cli("data", "samples", tmp_path, "--n", "3", "--style", "paper", "--offset", "200", "--data-dir", mnist_dir,
            cwd=tmp_path)
    truth = dict(line.split(",") for line in (tmp_path / "labels.csv").read_text().split()[1:])
    browser.get(server)
    picked = sorted(tmp_path.glob("0*"))[0]
    browser.find_element("id", "file").send_keys(str(picked))
    assert _wait_idle(browser) == truth[picked.name]
    dropped = sorted(tmp_path.glob("0*"))[1]
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], arguments[1], {type: "image/jpeg"}));
        window.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    """, base64.b64encode(dropped.read_bytes()).decode(), dropped.name)
    assert _wait_idle(browser) == truth[dropped.name]
    assert browser.find_element("id", "photo").get_attribute("hidden") is None, "the photo is shown"
    Image.open(picked).verify()


def test_the_api_docs_page_works_with_the_network_off(served, tmp_path: Path):
    """A cluster node without internet: every name but this machine's fails to resolve."""
    url, _ = served
    offline = _chromium("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    try:
        offline.get(f"{url}/docs")
        deadline = time.time() + 20
        while time.time() < deadline and not offline.find_elements("css selector", ".swagger-ui .info .title"):
            time.sleep(0.1)
        assert "lenet-dist" in offline.find_element("css selector", ".swagger-ui .info .title").text
        assert offline.find_elements("css selector", ".opblock-summary-path[data-path='/v1/predict']")
        loaded = offline.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
        assert loaded and all(name.startswith(url) for name in loaded), loaded
    finally:
        offline.quit()


def _raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_a_chunked_upload_is_refused_once_it_passes_the_file_limit_not_read_to_its_end(served):
    """No Content-Length: the server counts as it reads, answers 413 and stops reading."""
    url, _ = served
    sock, boundary, sent = _raw(url), "b", 0
    sock.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}"
                 "\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    part = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="huge.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode()
    sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"0" * (1 << 20))
    try:
        for _ in range(200):  # 200 MB, twenty times the 10 MB limit
            sock.sendall(chunk)
            sent += 1 << 20
    except OSError:
        pass  # the server closed the connection: the rest is never read
    answer = b""
    with contextlib.suppress(OSError):
        while chunk_in := sock.recv(65536):
            answer += chunk_in
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413") and b"huge.png: larger than the 10,485,760-byte limit" in answer, answer
    assert sent < 60 * 2**20, f"the client could send {sent / 2**20:.0f} MB"
    assert _post(url, [_digit_file()])[0]["label"] is not None, "the server goes on serving"


def _digit_file() -> Path:
    path = ARTIFACTS / "digit-for-limits.png"
    ARTIFACTS.mkdir(exist_ok=True)
    gray = np.full((112, 112), 255, np.uint8)
    gray[20:92, 50:62] = 0
    Image.fromarray(gray).save(path)
    return path


def test_a_client_that_goes_away_mid_upload_is_one_quiet_line(served):
    url, log = served
    sock = _raw(url)
    sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                 b"Content-Length: 1000000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; "
                 b"filename=\"a.png\"\r\n\r\n" + b"0" * 50_000)
    time.sleep(0.5)
    sock.close()
    deadline = time.time() + 10
    while time.time() < deadline and "disconnected before its upload was complete" not in log.read_text():
        time.sleep(0.1)
    text = log.read_text()
    assert "disconnected before its upload was complete" in text and "Traceback" not in text, text
    assert _post(url, [_digit_file()])[0]["label"] is not None


def test_a_client_that_sends_its_request_a_byte_at_a_time_is_cut_off(served):
    url, log = served
    sock, t0 = _raw(url), time.time()
    with contextlib.suppress(OSError):
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
            sock.sendall(bytes([byte]))
            time.sleep(0.1)
    with contextlib.suppress(OSError):
        assert sock.recv(100) == b"", "closed, no answer"
    sock.close()
    assert time.time() - t0 < REQUEST_TIMEOUT_S + 3, "closed at the request deadline, not when the client was done"
    assert f"did not send its request within {REQUEST_TIMEOUT_S} s" in log.read_text()


def test_binding_beyond_localhost_warns_that_the_api_has_no_authentication(model_dir: Path):
    proc = subprocess.Popen([sys.executable, "-m", "lenet_dist", "serve", "--checkpoint", str(model_dir), "--host",
                             "0.0.0.0", "--port", str(free_port()), "--workers", "1"], env=cli_env(),
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stderr.readline() for _ in range(2)]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert "warning: 0.0.0.0 is reachable beyond this machine and the API has no authentication" in lines[1], lines
