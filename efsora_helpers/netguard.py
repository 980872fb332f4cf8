"""Reading the network guard's log (the guard itself is ``tools/netguard/sitecustomize.py``).

The test run and the book build set ``EFSORA_NETGUARD_LOG`` and put the guard on ``PYTHONPATH``;
every non-loopback attempt of any Python process lands in the log, and a non-empty log fails the
run. Taught in ``book/setup/index.md``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from .paths import repo_root


def guard_dir() -> Path:
    return repo_root() / "tools" / "netguard"


def guarded_environment(log: Path, base: dict | None = None) -> dict:
    """An environment in which every Python process started from it is guarded."""
    env = dict(os.environ if base is None else base)
    paths = [str(guard_dir())] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["EFSORA_NETGUARD_LOG"] = str(log)
    return env


def activate_in_process(log: Path) -> None:
    """Guard this process and every child it starts from now on (used by the test session)."""
    import sys

    os.environ.update(guarded_environment(Path(log)))
    guard_file = guard_dir() / "sitecustomize.py"
    loaded = sys.modules.get("sitecustomize")
    if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == guard_file.resolve():
        if getattr(loaded, "_LOG", None) == str(log):  # started guarded (make test): one hook only
            sys.modules["_efsora_netguard"] = loaded
            return
    spec = importlib.util.spec_from_file_location("_efsora_netguard", guard_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["_efsora_netguard"] = module


def read_log(log: Path) -> list[dict]:
    path = Path(log)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def format_entries(entries: list[dict]) -> str:
    lines = []
    for e in entries:
        where = e.get("notebook") or " ".join(e.get("argv", [])) or f"pid {e.get('pid')}"
        lines.append(f"- {where}: {e['event']} {e['target']}")
        lines += [f"    {frame}" for frame in e.get("stack", [])[-3:]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m efsora_helpers.netguard LOG``: exit 1 and list the attempts if the log is not empty."""
    import sys

    args = argv if argv is not None else sys.argv[1:]
    entries = read_log(Path(args[0]))
    if entries:
        print(f"network guard: {len(entries)} non-loopback attempt(s):\n{format_entries(entries)}", file=sys.stderr)
        return 1
    print(f"network guard: no non-loopback attempt ({args[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
