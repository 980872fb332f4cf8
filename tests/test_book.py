"""The book: parameters worth exercising, a clean build with warnings as errors, no secrets."""

import json
import os
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
            text = path.read_text(errors="ignore")
            if path.suffix == ".ipynb":  # base64 images can spell anything; scan sources and text outputs
                nb = json.loads(text)
                for cell in nb["cells"]:
                    for out in cell.get("outputs", []):
                        for mime in [m for m in out.get("data", {}) if m.startswith("image/")]:
                            del out["data"][mime]
                text = json.dumps(nb)
            if pattern.search(text):
                leaks.append(name)
    assert leaks == []
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_longest_first_prefers_the_latest_measurement(tmp_path, notebook_factory):
    from efsora_helpers.book import COSTS_JSON, TEST_DURATIONS, longest_first

    (tmp_path / COSTS_JSON).parent.mkdir(parents=True)
    (tmp_path / COSTS_JSON).write_text(json.dumps({"notebooks": [
        {"notebook": "notebooks/a.ipynb", "wall_s": 50.0}, {"notebook": "notebooks/b.ipynb", "wall_s": 10.0}]}))
    (tmp_path / TEST_DURATIONS).parent.mkdir(parents=True)
    (tmp_path / TEST_DURATIONS).write_text(json.dumps({"tests/test_slow.py": 30.0, "tests/test_fast.py": 1.0}))
    measured = tmp_path / "times.json"
    measured.write_text(json.dumps({"notebooks/b.ipynb": 70.0}))  # this machine's last run wins
    (tmp_path / "notebooks").mkdir()
    nbformat.write(notebook_factory([("pass", (), None)], budget=40), tmp_path / "notebooks" / "new.ipynb")
    paths = ["tests/test_fast.py", "tests/test_unknown.py", "notebooks/new.ipynb", "tests/test_slow.py",
             "notebooks/a.ipynb", "notebooks/b.ipynb"]
    assert longest_first(paths, tmp_path, measured) == [
        "notebooks/b.ipynb", "notebooks/a.ipynb", "notebooks/new.ipynb",  # never measured: its budget
        "tests/test_slow.py", "tests/test_unknown.py", "tests/test_fast.py",  # unknown: 5 s
    ]


@pytest.mark.slow
def test_execute_runs_two_notebooks_at_a_time(notebook_factory, scratch_dir):
    from efsora_helpers.book import execute

    paths = []
    for name in ("one", "two"):
        stamp = "f'{time.time()} {os.environ[\"OMP_NUM_THREADS\"]}\\n'"  # when, and on how many threads
        record = f"open({str(scratch_dir / name)!r}, 'a').write({stamp})"
        nb = notebook_factory([("import os, time", (), None), (f"{record}\ntime.sleep(5)\n{record}", (), None)])
        paths.append(scratch_dir / f"{name}.ipynb")
        nbformat.write(nb, paths[-1])
    costs = execute(paths, write_report=False, jobs=2)
    assert [c.notebook for c in costs] == [p.relative_to(ROOT).as_posix() for p in paths]
    assert all(c.ok and c.peak_rss_mb > 0 for c in costs)
    (start1, threads1), (end1, _) = [line.split() for line in (scratch_dir / "one").read_text().splitlines()]
    (start2, threads2), (end2, _) = [line.split() for line in (scratch_dir / "two").read_text().splitlines()]
    assert float(start2) < float(end1) and float(start1) < float(end2), "the two did not run at the same time"
    assert {threads1, threads2} == {os.environ.get("OMP_NUM_THREADS", "1")}
    ran = [nbformat.read(p, as_version=4).cells[1].execution_count for p in paths]
    assert ran == [2, 2], "each notebook was executed in place"
