"""Fixtures for the unit tests. Notebooks the tests build on purpose go under _build/ (inside the
repository, so the root conftest applies to them when a child pytest executes them)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def scratch_dir(request):
    # The module in the path too: parallel workers may run same-named tests of two files at once.
    path = ROOT / "_build" / "test-scratch" / request.node.module.__name__.rsplit(".", 1)[-1] / request.node.name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_notebook(cells, budget=60):
    """A small notebook: ``cells`` are (source, tags, outputs) triples, outputs as stdout text."""
    nb = nbformat.v4.new_notebook()
    for i, (source, tags, stdout) in enumerate(cells, 1):
        cell = nbformat.v4.new_code_cell(source, execution_count=i)
        if tags:
            cell.metadata["tags"] = list(tags)
        if stdout is not None:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stdout)]
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["efsora"] = {"time_budget_s": budget}
    return nb


# What a child session must not inherit: the parent's session and notebook markers, the xdist worker
# identity of a parallel parent, and options that would parallelise the child behind its back.
PARENT_ONLY = ("EFSORA_NETGUARD_SESSION", "EFSORA_NOTEBOOK", "EFSORA_TEST_REPORTS", "PYTEST_ADDOPTS",
               "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")


def run_child_pytest(target: Path, log: Path, *extra: str, workers: int = 0) -> subprocess.CompletedProcess:
    """Run pytest --nbval-lax on ``target`` (a notebook or a folder) in a child session with its own
    guard log and its reports in ``log``'s folder; in one process unless ``workers`` (pytest -n)."""
    env = {k: v for k, v in os.environ.items() if k not in PARENT_ONLY}
    env["EFSORA_NETGUARD_LOG"] = str(log)
    env["EFSORA_TEST_REPORTS"] = str(log.parent / "reports")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", "-n", str(workers),
         str(target), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture
def notebook_factory():
    return make_notebook


@pytest.fixture
def child_pytest():
    return run_child_pytest
