"""The book: parameters worth exercising, a clean build with warnings as errors, no secrets."""

import re
import subprocess
import sys

from pathlib import Path

import nbformat
import pytest

from efsora_helpers.book import toc_notebooks
from efsora_helpers.paths import repo_root

ROOT = repo_root()


@pytest.mark.slow
def test_setup_notebook_with_another_chapter_filter(scratch_dir):
    import papermill

    out = scratch_dir / "environment_ch3.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks/setup/environment.ipynb"), str(out),
        parameters={"chapter_filter": 3, "verify_hashes": False},
        cwd=str(ROOT / "notebooks/setup"), progress_bar=False, kernel_name="python3",
    )
    nb = nbformat.read(out, as_version=4)
    table = next(
        o["text"] for c in nb.cells if "nbval-check-output" in c.metadata.get("tags", [])
        for o in c.outputs if o.get("name") == "stdout"
    )
    names = [line.split()[0] for line in table.strip().splitlines()[1:]]
    assert "whisper-tiny-en-ct2" in names and "smollm2-135m-instruct-q4" in names
    assert "yolov8n-coco" not in names and "easyocr-craft-detector" not in names


@pytest.mark.slow
def test_book_builds_with_warnings_as_errors(tmp_path):
    result = subprocess.run(
        [str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT), "--path-output", str(tmp_path),
         "--builder", "html", "-W", "-n", "--keep-going", "-q"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    html = tmp_path / "_build" / "html"
    index = (html / "book" / "intro.html").read_text()
    for nb in toc_notebooks():
        assert (html / nb.relative_to(ROOT).with_suffix(".html")).exists()
    for caption in ("Chapter 1", "Chapter 4", "Chapter 7", "Glossary", "References"):
        assert caption in index


def test_no_key_is_committed():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    pattern = re.compile(r"(sk-[A-Za-z0-9]{20,}|sk-ant-[A-Za-z0-9-]{20,}|AIza[0-9A-Za-z_-]{30,})")
    leaks = []
    for name in tracked:
        path = ROOT / name
        if path.suffix in {".py", ".md", ".ipynb", ".yml", ".yaml", ".txt", ".toml", ".example", ""} and path.is_file():
            if pattern.search(path.read_text(errors="ignore")):
                leaks.append(name)
    assert leaks == []
    assert ".env" in (ROOT / ".gitignore").read_text().split()
