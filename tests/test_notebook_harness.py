"""The notebook harness itself: nbval catches changed outputs, the time budget fails a slow
notebook, the conventions checker catches each broken rule, and the toc and notebooks agree."""

import json
import os

import nbformat
import pytest

from efsora_helpers.book import notebook_problems, resolve_entry, toc_entries, toc_notebooks
from efsora_helpers.netguard import read_log

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
SETUP = "import efsora_helpers as eh\nctx = eh.setup(quiet=True)"


def test_every_toc_entry_exists():
    missing = [e for e in toc_entries() if resolve_entry(e) is None]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


def test_every_notebook_is_in_the_toc():
    listed = {p.resolve() for p in toc_notebooks()}
    on_disk = {p.resolve() for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts}
    assert on_disk - listed == set(), f"notebooks missing from _toc.yml: {sorted(on_disk - listed)}"
    assert listed, "the toc lists no notebook"


@pytest.mark.parametrize("notebook", toc_notebooks(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_follows_conventions(notebook):
    assert notebook_problems(notebook) == []


def _good(notebook_factory):
    return notebook_factory(
        [(SETUP, (), None), ("n = 2", ("parameters",), None), ("print(n + 2)", ("nbval-check-output",), "4\n")]
    )


def test_conventions_checker_accepts_a_good_notebook(notebook_factory, scratch_dir):
    path = scratch_dir / "good.ipynb"
    nbformat.write(_good(notebook_factory), path)
    assert notebook_problems(path) == []


@pytest.mark.parametrize(
    "breakage, expected",
    [
        ("no_parameters", "no cell tagged 'parameters'"),
        ("error_output", "stored error output"),
        ("out_of_order", "not executed in order"),
        ("no_setup", "does not call eh.setup("),
        ("no_budget", "time_budget_s"),
        ("not_in_toc", "not listed in _toc.yml"),
    ],
)
def test_conventions_checker_catches(breakage, expected, notebook_factory, scratch_dir):
    nb = _good(notebook_factory)
    if breakage == "no_parameters":
        nb.cells[1].metadata["tags"] = []
    elif breakage == "error_output":
        nb.cells[2].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="x", traceback=[])]
    elif breakage == "out_of_order":
        nb.cells[1].execution_count, nb.cells[2].execution_count = 3, 2
    elif breakage == "no_setup":
        nb.cells[0].source = "import os"
    elif breakage == "no_budget":
        del nb.metadata["efsora"]
    path = scratch_dir / "bad.ipynb"
    nbformat.write(nb, path)
    problems = notebook_problems(path, in_toc=breakage != "not_in_toc")
    assert any(expected in p for p in problems), problems


@pytest.mark.slow
def test_nbval_fails_when_a_checked_output_changes(notebook_factory, child_pytest, scratch_dir):
    path = scratch_dir / "checked.ipynb"
    nbformat.write(_good(notebook_factory), path)
    passing = child_pytest(path, scratch_dir / "guard.jsonl")
    assert passing.returncode == 0, passing.stdout[-3000:]

    nb = nbformat.read(path, as_version=4)
    nb.cells[2].outputs[0]["text"] = "5\n"  # the committed output no longer matches what runs
    nbformat.write(nb, path)
    failing = child_pytest(path, scratch_dir / "guard.jsonl")
    assert failing.returncode != 0
    assert "1 failed" in failing.stdout, failing.stdout[-3000:]


@pytest.mark.slow
def test_unchecked_cells_may_change(notebook_factory, child_pytest, scratch_dir):
    nb = _good(notebook_factory)
    nb.cells.append(nbformat.v4.new_code_cell("import time; print(time.time())", execution_count=4))
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text="0\n")]
    path = scratch_dir / "lax.ipynb"
    nbformat.write(nb, path)
    result = child_pytest(path, scratch_dir / "guard.jsonl")
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.slow
def test_a_notebook_over_its_time_budget_fails(notebook_factory, child_pytest, scratch_dir):
    nb = notebook_factory(
        [(SETUP, (), None), ("n = 1", ("parameters",), None), ("import time; time.sleep(6)", (), None)],
        budget=4,
    )
    path = scratch_dir / "slow.ipynb"
    nbformat.write(nb, path)
    result = child_pytest(path, scratch_dir / "guard.jsonl")
    assert result.returncode != 0
    assert "time budget" in result.stdout or "Timeout" in result.stdout, result.stdout[-3000:]


@pytest.mark.slow
def test_changing_a_committed_output_of_a_book_notebook_fails(child_pytest, scratch_dir):
    """The same proof on a real notebook: one digit of a checked output changed, one failure."""
    source = ROOT / "notebooks" / "setup" / "environment.ipynb"
    nb = nbformat.read(source, as_version=4)
    checked = [c for c in nb.cells if "nbval-check-output" in c.metadata.get("tags", [])]
    assert checked, "the setup notebook has no checked cell"
    stdout = next(o for o in checked[-1].outputs if o.get("name") == "stdout")
    stdout["text"] = stdout["text"].replace("[", "[changed-", 1)
    path = scratch_dir / source.name
    nbformat.write(nb, path)
    result = child_pytest(path, scratch_dir / "guard.jsonl")
    assert result.returncode != 0
    assert "1 failed" in result.stdout, result.stdout[-3000:]


ATTEMPT = """import socket
try:
    socket.getaddrinfo("example.com", 443)
except OSError as exc:
    print("refused")"""


@pytest.mark.slow
def test_a_parallel_run_keeps_each_notebook_whole_and_merges_what_workers_saw(
    notebook_factory, child_pytest, scratch_dir
):
    """pytest -n 2 (make test's mode): each notebook on one worker, in one kernel that knows its
    notebook and runs on one thread; the controller merges both workers' times and guard entries."""
    rel = scratch_dir.relative_to(ROOT).as_posix()
    names = ("first", "second")
    for name in names:
        seen = scratch_dir / f"{name}.seen"
        nb = notebook_factory([
            (SETUP, (), None),
            ("n = 2", ("parameters",), None),
            ("import os\nprint(os.environ['EFSORA_NOTEBOOK'])", ("nbval-check-output",), f"{rel}/{name}.ipynb\n"),
            (f"open({str(seen)!r}, 'w').write(os.environ['PYTEST_XDIST_WORKER'] + ' ' + os.environ['OMP_NUM_THREADS'])",
             (), None),
            (ATTEMPT, (), None),
            ("print(n + 2)", ("nbval-check-output",), "4\n"),  # a variable of an earlier cell: the same kernel
        ])
        nbformat.write(nb, scratch_dir / f"{name}.ipynb")
    log = scratch_dir / "guard.jsonl"
    result = child_pytest(scratch_dir, log, workers=2)
    out = result.stdout[-3000:]

    assert "12 passed" in result.stdout and "failed" not in result.stdout, out
    seen = [(scratch_dir / f"{name}.seen").read_text().split() for name in names]
    assert sorted(worker for worker, _ in seen) == ["gw0", "gw1"], seen
    assert {threads for _, threads in seen} == {os.environ.get("OMP_NUM_THREADS", "1")}
    times = json.loads((scratch_dir / "reports" / "test_notebook_times.json").read_text())
    assert sorted(times) == [f"{rel}/{name}.ipynb" for name in names]
    # Both kernels appended to the one log; the controller listed both and failed the run.
    assert sorted(e["notebook"] for e in read_log(log)) == [f"{rel}/{name}.ipynb" for name in names]
    assert result.returncode != 0 and "NETWORK GUARD: 2 non-loopback attempt(s)" in result.stdout, out
