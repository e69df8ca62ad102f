"""predict on real image files made from held-out MNIST digits; bad inputs never stop a batch."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lenet_dist.errors import EXIT_PARTIAL

from ..conftest import one_error_line, run_cli

pytestmark = pytest.mark.slow  # real launches: subprocesses, multi-process, the SLURM cluster


def _samples(mnist_dir: Path, out: Path, n: int, style: str) -> dict[str, str]:
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = run_cli("data", "samples", out, "--n", n, "--style", style, "--data-dir", mnist_dir, cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    return {row["file"]: row["label"] for row in csv.DictReader((out / "labels.csv").read_text().splitlines())}


def _accuracy(rows: list[dict], truth: dict[str, str]) -> float:
    return sum(r["label"] == truth[Path(r["file"]).name] for r in rows) / len(rows)


def test_user_like_photos_are_predicted_at_97_percent(model_dir: Path, mnist_dir: Path, tmp_path: Path):
    truth = _samples(mnist_dir, tmp_path / "photos", 300, "user")
    suffixes = {Path(f).suffix for f in truth}
    modes = {Image.open(tmp_path / "photos" / f).mode for f in truth}
    assert suffixes == {".png", ".jpg"} and modes == {"RGB", "RGBA"}
    proc = run_cli("predict", tmp_path / "photos", "--checkpoint", model_dir, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 300 and _accuracy(rows, truth) >= 0.97
    raw = run_cli("predict", tmp_path / "photos", "--checkpoint", model_dir, "--json", "--no-preprocess",
                  cwd=tmp_path)
    assert _accuracy(json.loads(raw.stdout), truth) < 0.5, "the preprocessing is what makes this work"


def test_mnist_like_inputs_match_the_held_out_evaluation(model_dir: Path, mnist_dir: Path, tmp_path: Path):
    import torch

    from lenet_dist.checkpoint import load_model
    from lenet_dist.data.datasets import MNIST
    from lenet_dist.data.tensors import load_split

    _samples(mnist_dir, tmp_path / "plain", 200, "mnist")
    proc = run_cli("predict", tmp_path / "plain", "--checkpoint", model_dir, "--json", "--no-preprocess",
                   cwd=tmp_path)
    rows = json.loads(proc.stdout)
    model, _ = load_model(model_dir)
    with torch.inference_mode():
        expected = model(MNIST.normalization.apply(load_split(MNIST, mnist_dir, "test", 200).images)).argmax(1).tolist()
    assert [int(r["label"]) for r in rows] == expected


def _bad_inputs(d: Path, good: Path) -> dict[str, str]:
    """File name -> the words its error line must contain (None: must be predicted)."""
    d.mkdir()
    digit = np.asarray(Image.open(good).convert("L"))
    (d / "notes.png").write_text("this is not an image\n")
    (d / "empty.png").write_bytes(b"")
    png = (good.read_bytes())
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    Image.fromarray(digit).convert("RGB").save(d / "full.jpg", quality=95)
    jpg = (d / "full.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (d / "full.jpg").unlink()
    Image.new("L", (8000, 6000), 255).save(d / "bomb.png")
    Image.new("L", (300, 200), 240).save(d / "blank.png")
    frames = [Image.fromarray(digit), Image.fromarray(255 - digit)]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.fromarray(digit.astype(np.uint16) * 257).save(d / "sixteen-bit.png")
    Image.fromarray(digit).convert("CMYK").save(d / "cmyk.jpg", quality=95)
    Image.fromarray(digit).convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE).save(d / "palette.png")
    return {"notes.png": "not an image", "empty.png": "empty file", "truncated.png": "truncated",
            "truncated.jpg": "truncated", "bomb.png": "too large", "blank.png": "no ink",
            "animated.gif": "animated", "sixteen-bit.png": None, "cmyk.jpg": None, "palette.png": None}


def test_bad_inputs_get_one_line_each_and_the_rest_are_predicted(model_dir: Path, mnist_dir: Path,
                                                                   tmp_path: Path):
    truth = _samples(mnist_dir, tmp_path / "ok", 5, "user")
    _samples(mnist_dir, tmp_path / "plain", 1, "mnist")  # digit 7, light on dark
    expected = _bad_inputs(tmp_path / "bad", tmp_path / "plain" / "00000.png")
    (tmp_path / "no-images").mkdir()
    (tmp_path / "no-images" / "readme.txt").write_text("nothing here")
    proc = run_cli("predict", tmp_path / "ok", tmp_path / "bad", tmp_path / "missing.png", tmp_path / "no-images",
                   str(tmp_path / "none-*.png"), "--checkpoint", model_dir, "--json", cwd=tmp_path)
    assert proc.returncode == EXIT_PARTIAL
    assert "Traceback" not in proc.stderr
    rows = {Path(r["file"]).name: r for r in json.loads(proc.stdout)}
    for name, words in expected.items():
        if words is None:
            assert rows[name]["error"] is None and rows[name]["label"] == "7", (name, rows[name])
        else:
            assert words in rows[name]["error"], (name, rows[name])
            assert sum(name in line for line in proc.stderr.splitlines()) == 1
    assert rows["missing.png"]["error"] == "no such file or directory"
    assert "no image files" in rows["no-images"]["error"]
    assert rows["none-*.png"]["error"] == "pattern matches no files"
    assert sum(rows[f]["label"] == label for f, label in truth.items()) >= 4


def test_save_preprocessed_writes_what_the_model_saw(model_dir: Path, mnist_dir: Path, tmp_path: Path):
    _samples(mnist_dir, tmp_path / "photos", 3, "user")
    proc = run_cli("predict", str(tmp_path / "photos" / "0*"), "--checkpoint", model_dir, "--save-preprocessed",
                   tmp_path / "seen", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    seen = sorted((tmp_path / "seen").glob("*.png"))
    assert len(seen) == 3
    for f in seen:
        a = np.asarray(Image.open(f))
        assert a.shape == (28, 28) and a[0].max() == 0 and a.max() > 200  # black border, bright ink


def test_default_checkpoint_is_the_latest_runs_best_model(model_dir: Path, mnist_dir: Path, tmp_path: Path):
    _samples(mnist_dir, tmp_path / "photos", 2, "user")
    import shutil

    shutil.copytree(model_dir.parent, tmp_path / "runs" / "m")
    proc = run_cli("predict", tmp_path / "photos", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "using checkpoint runs/m/" in proc.stderr
    empty = run_cli("predict", tmp_path / "photos", cwd=tmp_path / "photos")
    assert empty.returncode == 4 and "no trained model" in one_error_line(empty)


def test_torchscript_export_runs_without_lenet_dist_and_matches(model_dir: Path, mnist_dir: Path, tmp_path: Path):
    import torch

    from lenet_dist.checkpoint import load_model

    proc = run_cli("export", model_dir, "--output", tmp_path / "lenet.pt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    x = torch.randn(32, 1, 28, 28)
    torch.save(x, tmp_path / "x.pt")
    code = ("import sys, torch; assert 'lenet_dist' not in sys.modules; "
            "m = torch.jit.load(sys.argv[1]); torch.save(m(torch.load(sys.argv[2])), sys.argv[3])")
    subprocess.run([sys.executable, "-S", "-c", code, tmp_path / "lenet.pt", tmp_path / "x.pt", tmp_path / "y.pt"],
                   check=True, env={"PYTHONPATH": ":".join(p for p in sys.path if "site-packages" in p)},
                   cwd=tmp_path)
    model, _ = load_model(model_dir)
    with torch.inference_mode():
        assert torch.allclose(torch.load(tmp_path / "y.pt"), model(x), atol=1e-5)
    meta = json.loads((tmp_path / "lenet.pt.json").read_text())
    assert meta["normalization"]["mean"] == pytest.approx(0.1307)


def test_onnx_export_runs_in_onnxruntime_alone_and_matches(model_dir: Path, tmp_path: Path):
    import numpy as np
    import torch

    from lenet_dist.checkpoint import load_model

    proc = run_cli("export", model_dir, "--format", "onnx", "--output", tmp_path / "lenet.onnx", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    x = torch.randn(7, 1, 28, 28)  # a batch size the export never saw: the batch axis is dynamic
    np.save(tmp_path / "x.npy", x.numpy())
    code = ("import sys, numpy as np, onnxruntime as ort; "
            "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider']); "
            "np.save(sys.argv[3], s.run(None, {'input': np.load(sys.argv[2])})[0]); "
            "assert 'torch' not in sys.modules and 'lenet_dist' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, tmp_path / "lenet.onnx", tmp_path / "x.npy", tmp_path / "y.npy"],
                   check=True, cwd=tmp_path)
    model, _ = load_model(model_dir)
    with torch.inference_mode():
        np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model(x).numpy(), atol=1e-4)


def test_batch_prediction_job_writes_a_csv_per_folder(model_dir: Path, mnist_dir: Path, tmp_path: Path):
    from ..conftest import REPO, cli_env

    truth = _samples(mnist_dir, tmp_path / "inbox" / "day1", 20, "user")
    done = subprocess.run(["bash", REPO / "jobs" / "predict_folder.sh", tmp_path / "inbox", tmp_path / "out.csv",
                           "--checkpoint", model_dir], cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "out.csv").read_text().splitlines()))
    assert len(rows) == 20 and _accuracy(rows, truth) >= 0.9


def test_notebook_paper_photos_are_read_and_blank_pages_get_an_error_row(model_dir: Path, mnist_dir: Path,
                                                                       tmp_path: Path):
    from lenet_dist.data.paper import empty_page

    truth = _samples(mnist_dir, tmp_path / "paper", 200, "paper")
    Image.new("RGB", (300, 200), (245, 240, 230)).save(tmp_path / "paper" / "blank.png")
    empty_page(np.random.default_rng(0)).save(tmp_path / "paper" / "lines-only.jpg")
    proc = run_cli("predict", tmp_path / "paper", "--checkpoint", model_dir, "--json", cwd=tmp_path)
    assert proc.returncode == EXIT_PARTIAL
    rows = {Path(r["file"]).name: r for r in json.loads(proc.stdout)}
    for page in ("blank.png", "lines-only.jpg"):
        assert rows[page]["label"] is None and "found" in rows[page]["error"], rows[page]
        assert f"{page}: no" in proc.stderr
    read = [rows[f] for f in truth]
    assert _accuracy(read, truth) >= 0.95  # a 3-epoch model; jobs/predict_benchmark.py measures the default one
    assert all(isinstance(r["uncertain"], bool) for r in read)
    wrong = [r for r in read if r["label"] != truth[Path(r["file"]).name]]
    assert sum(r["uncertain"] for r in wrong) >= len(wrong) / 3, "low-confidence answers are flagged"


def test_number_reads_rows_of_digits_left_to_right(model_dir: Path, mnist_dir: Path, tmp_path: Path):
    truth = _samples(mnist_dir, tmp_path / "rows", 12, "number")
    proc = run_cli("predict", tmp_path / "rows", "--number", "--checkpoint", model_dir, "--json", cwd=tmp_path)
    rows = json.loads(proc.stdout)
    assert len(rows) == 12 and proc.returncode in (0, EXIT_PARTIAL), proc.stderr
    right = [r for r in rows if r["number"] == truth[Path(r["file"]).name]]
    assert len(right) >= 10, [(r["number"], truth[Path(r["file"]).name], r["error"]) for r in rows]
    for r in right:
        assert [d["label"] for d in r["digits"]] == list(r["number"])
        assert r["confidence"] == min(d["confidence"] for d in r["digits"])
    as_csv = run_cli("predict", tmp_path / "rows", "--number", "--checkpoint", model_dir, "--csv", cwd=tmp_path)
    assert as_csv.stdout.splitlines()[0] == "file,number,confidence,digit_confidences,uncertain,error"


def test_finetune_learns_a_folder_of_digits_alone_or_on_two_processes_into_a_run_predict_takes(
        model_dir: Path, mnist_dir: Path, tmp_path: Path):
    from safetensors.torch import load_file

    from ..conftest import launch, read_summary

    truth = _samples(mnist_dir, tmp_path / "photos", 120, "paper")
    for name, label in truth.items():  # torchvision's ImageFolder layout: mine/<digit>/<file>
        (tmp_path / "mine" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "photos" / name).rename(tmp_path / "mine" / label / name)
    args = ("finetune", tmp_path / "mine", "--checkpoint", model_dir.parent, "--data-dir", mnist_dir, "--output-dir",
            tmp_path / "runs", "--epochs", "1", "--set", "data.train_subset=3000", "--tracking", "disabled")
    one = run_cli(*args, "--run-name", "one", cwd=tmp_path)
    two = launch(2, *args, "--run-name", "two", cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    summary = read_summary(tmp_path / "runs" / "one")
    assert summary["status"] == "completed" and Path(summary["checkpoint"]).is_dir()
    assert summary["test_samples"] == 10_000 and summary["test_accuracy"] >= 0.97, "it did not forget MNIST"
    a, b = (load_file(tmp_path / "runs" / run / "model" / "model.safetensors") for run in ("one", "two"))
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=1e-4), (name, (a[name] - b[name]).abs().max())
    before = json.loads(run_cli("predict", "-r", tmp_path / "mine", "--checkpoint", model_dir, "--json",
                                cwd=tmp_path).stdout)
    after = json.loads(run_cli("predict", "-r", tmp_path / "mine", "--checkpoint", tmp_path / "runs" / "one",
                               "--json", cwd=tmp_path).stdout)
    assert _accuracy(after, {Path(r["file"]).name: Path(r["file"]).parent.name for r in after}) >= \
        _accuracy(before, {Path(r["file"]).name: Path(r["file"]).parent.name for r in before})
