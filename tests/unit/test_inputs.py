"""Which files `predict` reads: files, folders, -r, globs; and an error for each input that yields none."""

from pathlib import Path

from lenet_dist.inference.images import collect_inputs


def _tree(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    for p in ("a.png", "b.JPG", "notes.txt", "sub/c.png"):
        (root / p).write_bytes(b"x")


def test_folders_globs_and_files(tmp_path: Path):
    _tree(tmp_path)
    files, errors = collect_inputs([str(tmp_path), str(tmp_path / "sub" / "c.png"), str(tmp_path / "*.JPG")],
                                   recursive=False)
    assert [f.name for f in files] == ["a.png", "b.JPG", "c.png", "b.JPG"]
    assert errors == []


def test_recursive_looks_into_subfolders(tmp_path: Path):
    _tree(tmp_path)
    files, _ = collect_inputs([str(tmp_path)], recursive=True)
    assert sorted(f.name for f in files) == ["a.png", "b.JPG", "c.png"]


def test_inputs_that_yield_nothing_get_an_error_each(tmp_path: Path):
    _tree(tmp_path)
    files, errors = collect_inputs([str(tmp_path / "empty"), str(tmp_path / "nope.png"), str(tmp_path / "z*.png")],
                                   recursive=False)
    assert files == []
    assert [e for _, e in errors] == ["directory has no image files (add --recursive for subfolders)",
                                      "no such file or directory", "pattern matches no files"]
