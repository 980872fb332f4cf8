"""The book's own machinery: the table of contents, notebook execution and the cost report.

``efsora book execute`` re-runs every notebook in ``_toc.yml`` in place with papermill (the
reference run whose outputs are committed) and records wall time and peak memory per notebook in
``book/appendix/notebook_costs.json``, rendered as the appendix page "What each notebook costs".
Taught in ``book/setup/index.md``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from .paths import repo_root

DEFAULT_TIME_BUDGET_S = 300
COSTS_JSON = Path("book/appendix/notebook_costs.json")
COSTS_PAGE = Path("book/appendix/notebook_costs.md")


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


def execute(notebooks: list[Path] | None = None, write_report: bool = True) -> list[NotebookCost]:
    """Re-execute notebooks in place (all of the toc by default), measuring each one.

    Each notebook runs in its own process; ``os.wait4`` returns the peak resident memory of that
    process tree's largest process (the kernel), so the figure is the notebook's, not ours.
    """
    root = repo_root()
    notebooks = notebooks or toc_notebooks(root)
    costs = []
    for nb in notebooks:
        nb = Path(nb).resolve()
        rel = nb.relative_to(root).as_posix()
        env = dict(os.environ, EFSORA_NOTEBOOK=rel)
        print(f"executing {rel} ...", flush=True)
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", f"from efsora_helpers.book import _execute_one; _execute_one({str(nb)!r})"],
            env=env,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        budget = time_budget(nb)
        cost = NotebookCost(rel, round(wall, 1), round(usage.ru_maxrss / 1024, 0), budget, code == 0 and wall <= budget)
        costs.append(cost)
        print(f"  {cost.wall_s:.1f} s, peak {cost.peak_rss_mb:.0f} MB, budget {budget:.0f} s", flush=True)
        if code != 0:
            raise RuntimeError(f"{rel} failed (exit {code}); its error is in the notebook and above")
        if wall > budget:
            raise RuntimeError(f"{rel} took {wall:.0f} s, over its {budget:.0f} s budget")
    if write_report:
        _write_report(costs, root)
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


def _write_report(costs: list[NotebookCost], root: Path) -> None:
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
        "threads": os.environ.get("OMP_NUM_THREADS", "default"),
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
        "set. The budget is what the test run allows the notebook.",
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
