"""The book's own machinery: the table of contents, notebook execution and the cost report.

``efsora book execute`` re-runs every notebook in ``_toc.yml`` in place with papermill (the
reference run whose outputs are committed), two at a time on single-threaded kernels by default,
and records wall time and peak memory per notebook in ``book/appendix/notebook_costs.json``,
rendered as the appendix page "What each notebook costs". The test run (``conftest.py``) uses the
same longest-first order and thread settings. Taught in ``book/setup/index.md``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from .paths import repo_root

DEFAULT_TIME_BUDGET_S = 300
COSTS_JSON = Path("book/appendix/notebook_costs.json")
COSTS_PAGE = Path("book/appendix/notebook_costs.md")
# Per-file times of the last test run (written by conftest.py), and the committed ones of a full run.
TEST_FILE_TIMES = Path("_build/reports/test_file_times.json")
TEST_DURATIONS = Path("tests/durations.json")
UNKNOWN_TEST_FILE_S = 5.0
DEFAULT_JOBS = 2

# Several notebooks at once on a small CPU: one thread per process, or the kernels' thread pools
# fight over the cores (shared/OFFLINE.md: one thread beats two on 2 shared cores). Each is a
# library's own switch; a value already set wins.
SINGLE_THREAD_VARIABLES = {
    "OMP_NUM_THREADS": "1",  # PyTorch, ctranslate2, OpenBLAS; the book's ONNX Runtime sessions read it too
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OPENCV_FOR_THREADS_NUM": "1",  # OpenCV's own pool ignores OMP_NUM_THREADS
}


def single_threaded(env: dict) -> dict:
    """``env`` with one thread per library unless it already says otherwise (changed in place)."""
    for key, value in SINGLE_THREAD_VARIABLES.items():
        env.setdefault(key, value)
    return env


def toc_entries(root: Path | None = None) -> list[str]:
    """Every ``file:`` (and the root) in ``_toc.yml``, in reading order, without extension."""
    root = root or repo_root()
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    entries = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                entries.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(toc)
    return entries


def resolve_entry(entry: str, root: Path | None = None) -> Path | None:
    """The file behind a toc entry (``.ipynb`` or ``.md``), or None if it does not exist."""
    root = root or repo_root()
    for suffix in (".ipynb", ".md"):
        path = root / f"{entry}{suffix}"
        if path.exists():
            return path
    return None


def toc_notebooks(root: Path | None = None) -> list[Path]:
    root = root or repo_root()
    paths = [resolve_entry(e, root) for e in toc_entries(root)]
    return [p for p in paths if p is not None and p.suffix == ".ipynb"]


def time_budget(notebook: Path) -> float:
    """The notebook's time budget on a 2-core CPU, ``metadata.efsora.time_budget_s``."""
    meta = json.loads(Path(notebook).read_text(encoding="utf-8")).get("metadata", {})
    return float(meta.get("efsora", {}).get("time_budget_s", DEFAULT_TIME_BUDGET_S))


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def expected_seconds(root: Path | None = None, measured: Path | None = None) -> dict[str, float]:
    """What each notebook and test file took last time, by path relative to the repository.

    The latest figures win: ``measured`` (default ``_build/reports/test_file_times.json``, this
    machine's last test run) over the committed ones (the cost report for notebooks,
    ``tests/durations.json`` for test files).
    """
    root = root or repo_root()
    known = {r["notebook"]: r["wall_s"] for r in _read_json(root / COSTS_JSON).get("notebooks", [])}
    known.update(_read_json(root / TEST_DURATIONS))
    known.update(_read_json(measured if measured is not None else root / TEST_FILE_TIMES))
    return known


def longest_first(paths: list[str], root: Path | None = None, measured: Path | None = None) -> list[str]:
    """``paths`` (relative to the repository) ordered by expected time, longest first.

    Handing the longest work out first makes parallel workers finish together. A notebook never
    measured counts as its time budget (an upper bound, so it starts early); a test file as 5 s.
    """
    root = root or repo_root()
    known = expected_seconds(root, measured)

    def cost(rel: str) -> float:
        if rel in known:
            return float(known[rel])
        if rel.endswith(".ipynb") and (root / rel).exists():
            return time_budget(root / rel)
        return UNKNOWN_TEST_FILE_S

    return sorted(paths, key=cost, reverse=True)


@dataclass
class NotebookCost:
    notebook: str
    wall_s: float
    peak_rss_mb: float
    budget_s: float
    ok: bool


def _execute_one(notebook: str) -> None:
    """Child-process entry: run one notebook in place with its default (CI) parameters."""
    import papermill

    path = Path(notebook)
    papermill.execute_notebook(
        str(path),
        str(path),
        cwd=str(path.parent),
        kernel_name="python3",
        progress_bar=False,
        request_save_on_cell_execute=False,
    )


def _measure_one(nb: Path, rel: str, env: dict) -> tuple[NotebookCost, int]:
    """Run one notebook in its own process. ``os.wait4`` returns the peak resident memory of that
    process tree's largest process (the kernel), so the figure is the notebook's, not ours."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", f"from efsora_helpers.book import _execute_one; _execute_one({str(nb)!r})"],
        env=dict(env, EFSORA_NOTEBOOK=rel),
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = proc.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait again
    budget = time_budget(nb)
    cost = NotebookCost(rel, round(wall, 1), round(usage.ru_maxrss / 1024, 0), budget, code == 0 and wall <= budget)
    return cost, code


def execute(
    notebooks: list[Path] | None = None, write_report: bool = True, jobs: int = DEFAULT_JOBS
) -> list[NotebookCost]:
    """Re-execute notebooks in place (all of the toc by default), measuring each one.

    ``jobs`` notebooks run at a time, longest first, each kernel on one thread when ``jobs > 1``
    (an ``OMP_NUM_THREADS`` already set wins). After a failure no new notebook starts; the ones
    running finish, then the first failure is raised and no report is written.
    """
    root = repo_root()
    paths = {Path(nb).resolve().relative_to(root).as_posix(): Path(nb).resolve()
             for nb in (notebooks or toc_notebooks(root))}
    env = dict(os.environ)
    order = list(paths)
    jobs = max(1, min(jobs, len(order)))
    if jobs > 1:
        single_threaded(env)
        order = longest_first(order, root)
    failed = threading.Event()
    lock = threading.Lock()
    errors: list[str] = []

    def run(rel: str) -> NotebookCost | None:
        if failed.is_set():
            return None
        print(f"executing {rel} ...", flush=True)
        cost, code = _measure_one(paths[rel], rel, env)
        with lock:
            print(f"  {rel}: {cost.wall_s:.1f} s, peak {cost.peak_rss_mb:.0f} MB, "
                  f"budget {cost.budget_s:.0f} s", flush=True)
            if code != 0:
                errors.append(f"{rel} failed (exit {code}); its error is in the notebook and above")
            elif not cost.ok:
                errors.append(f"{rel} took {cost.wall_s:.0f} s, over its {cost.budget_s:.0f} s budget")
            if errors:
                failed.set()
        return cost

    with ThreadPoolExecutor(jobs) as pool:
        results = {c.notebook: c for c in pool.map(run, order) if c is not None}
    if errors:
        raise RuntimeError(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    costs = [results[rel] for rel in paths]
    if write_report:
        _write_report(costs, root, jobs)
    return costs


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()}, Python {platform.python_version()}"


def _write_report(costs: list[NotebookCost], root: Path, jobs: int = 1) -> None:
    json_path = root / COSTS_JSON
    previous = {}
    if json_path.exists():  # a partial run keeps the other notebooks' figures
        previous = {c["notebook"]: c for c in json.loads(json_path.read_text())["notebooks"]}
    for cost in costs:
        previous[cost.notebook] = asdict(cost)
    order = [p.relative_to(root).as_posix() for p in toc_notebooks(root)]
    rows = [previous[n] for n in order if n in previous]
    report = {
        "date": _dt.date.today().isoformat(),
        "machine": _machine(),
        "threads": single_threaded(dict(os.environ))["OMP_NUM_THREADS"] if jobs > 1
        else os.environ.get("OMP_NUM_THREADS", "default"),
        "jobs": jobs,
        "notebooks": rows,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    (root / COSTS_PAGE).write_text(render_report(report))


def render_report(report: dict) -> str:
    total = sum(r["wall_s"] for r in report["notebooks"])
    lines = [
        "<!-- Generated by `efsora book execute` (make execute). Do not edit by hand. -->",
        "",
        "# What each notebook costs on a 2-core CPU",
        "",
        f"Measured by the reference run on {report['date']}: {report['machine']}, "
        f"`OMP_NUM_THREADS={report['threads']}`, CI profile, no GPU. Wall time is the whole "
        "papermill run (kernel start included); peak memory is the kernel's largest resident "
        "set. The budget is what the test run allows the notebook."
        + (f" {report['jobs']} notebooks ran at a time, so each wall time includes sharing the CPU "
           "with another notebook, as in the test run." if report.get("jobs", 1) > 1 else ""),
        "",
        "| notebook | wall time (s) | peak memory (MB) | budget (s) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in report["notebooks"]:
        lines.append(f"| `{r['notebook']}` | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['budget_s']:.0f} |")
    lines += ["", f"Total: {total:.0f} s for {len(report['notebooks'])} notebooks.", ""]
    return "\n".join(lines)


SETUP_CALL = "eh.setup("


def notebook_problems(notebook: Path, in_toc: bool = True) -> list[str]:
    """What breaks the book's notebook conventions (an empty list when none):

    a cell tagged ``parameters``; the first code cell calls ``eh.setup(``; code cells executed in
    order (1, 2, 3, ...) with no stored error output; a time budget in the metadata; the notebook
    listed in ``_toc.yml``; at least one cell whose output the tests check.
    """
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    tags = [set(c.metadata.get("tags", [])) for c in code]
    if not any("parameters" in t for t in tags):
        problems.append("no cell tagged 'parameters'")
    if not code or SETUP_CALL not in code[0].source:
        problems.append(f"the first code cell does not call {SETUP_CALL}...)")
    counts = [c.execution_count for c in code if c.source.strip()]
    if counts != list(range(1, len(counts) + 1)):
        problems.append(f"code cells not executed in order: execution counts {counts}")
    errors = [i for i, c in enumerate(code) if any(o.get("output_type") == "error" for o in c.outputs)]
    if errors:
        problems.append(f"stored error output in code cell(s) {errors}")
    if "time_budget_s" not in nb.metadata.get("efsora", {}):
        problems.append("no metadata.efsora.time_budget_s")
    if not any("nbval-check-output" in t for t in tags):
        problems.append("no cell tagged 'nbval-check-output' (nothing's output is checked)")
    if not in_toc:
        problems.append("not listed in _toc.yml")
    return problems
