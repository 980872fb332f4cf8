"""The ``efsora`` command. Chapters add subcommands by appending a function to ``COMMANDS``:
it receives the argparse sub-parsers object and registers its parser with ``func=handler``.

Errors a user can fix (a missing asset, a bad path) end with a one-line reason and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from .assets import AssetError


def _assets(sub) -> None:
    p = sub.add_parser("assets", help="list, verify or fetch the book's models and data files")
    s = p.add_subparsers(dest="action", required=True)
    ls = s.add_parser("list", help="table of every registered asset and its status")
    ls.add_argument("--verify", action="store_true", help="also check sha256 of every file")
    ls.set_defaults(func=_assets_list)
    fetch = s.add_parser("fetch", help="check an asset; with --download, fetch an official one")
    fetch.add_argument("name")
    fetch.add_argument("--download", action="store_true", help="allow the download (needs internet)")
    fetch.set_defaults(func=_assets_fetch)


def _assets_list(args) -> int:
    from .assets import asset_table

    rows = asset_table(verify=args.verify)
    cols = ["asset", "kind", "chapters", "size_mb", "status"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
    return 1 if args.verify and any(r["status"] == "corrupt" for r in rows) else 0


def _assets_fetch(args) -> int:
    from .assets import get_asset

    print(get_asset(args.name, download=args.download))
    return 0


def _questions(sub) -> None:
    p = sub.add_parser("questions", help="the interview question bank")
    s = p.add_subparsers(dest="action", required=True)
    render = s.add_parser("render", help="write book/<chapter>/interview_notes.md from the bank")
    render.add_argument("--check", action="store_true", help="fail if a page is out of date")
    render.set_defaults(func=_questions_render)
    ls = s.add_parser("list", help="count questions per chapter")
    ls.set_defaults(func=_questions_list)


def _questions_render(args) -> int:
    from .questions import render_pages

    pages = render_pages(check=args.check)
    for page in pages:
        print(("out of date: " if args.check else "wrote ") + str(page))
    if args.check and pages:
        print("run `efsora questions render` and commit the pages", file=sys.stderr)
        return 1
    return 0


def _questions_list(args) -> int:
    from .chapters import CHAPTERS
    from .questions import load_bank

    bank = load_bank()
    for ch in CHAPTERS[1:]:
        qs = bank.for_chapter(ch.number)
        print(f"{ch.number} {ch.slug:<15} {len(qs):3d} questions, {sum(q.answered for q in qs):3d} answered")
    return 0


def _book(sub) -> None:
    p = sub.add_parser("book", help="execute the notebooks and write the cost report")
    s = p.add_subparsers(dest="action", required=True)
    ex = s.add_parser("execute", help="re-run notebooks in place with papermill (default: all in _toc.yml)")
    ex.add_argument("notebooks", nargs="*")
    ex.add_argument("--jobs", "-j", type=int, default=2,
                    help="notebooks at a time, longest first, one thread each when above 1 (default 2)")
    ex.set_defaults(func=_book_execute)
    nbs = s.add_parser("notebooks", help="list the notebooks of _toc.yml in order")
    nbs.set_defaults(func=_book_notebooks)


def _book_execute(args) -> int:
    from .book import execute

    execute(args.notebooks or None, jobs=args.jobs)
    return 0


def _book_notebooks(args) -> int:
    from .book import toc_notebooks
    from .paths import repo_root

    for nb in toc_notebooks():
        print(nb.relative_to(repo_root()))
    return 0


def _env(sub) -> None:
    p = sub.add_parser("env", help="prepare the offline environment and print what the book runs on")
    p.add_argument("--chapter", default="0")
    p.set_defaults(func=_env_run)


def _env_run(args) -> int:
    from .env import prepare_local_llm, setup

    chapter = int(args.chapter) if args.chapter.isdigit() else args.chapter
    setup(chapter=chapter)
    print(prepare_local_llm())  # built here once, so no notebook waits for it
    try:  # persist ultralytics' no-sync setting once, where ultralytics is installed
        from ultralytics import settings

        settings.update(sync=False)
    except ImportError:
        pass
    return 0


def _scenes(sub) -> None:
    from .safetyscenes.cli import add_commands

    add_commands(sub)


def _perceive(sub) -> None:
    from .perception.cli import add_commands

    add_commands(sub)


def _reason(sub) -> None:
    from .reasoner.cli import add_parser

    add_parser(sub)


def _agent(sub) -> None:
    from .agent.cli import add_commands

    add_commands(sub)


def _finetune(sub) -> None:
    from .finetuning.cli import add_commands

    add_commands(sub)


def _video(sub) -> None:
    from .video.cli import add_commands

    add_commands(sub)


COMMANDS: list[Callable] = [_env, _assets, _questions, _book, _scenes, _perceive, _reason, _agent, _finetune, _video]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="efsora", description="Tools of the Senior AI Engineer interview-preparation book."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (AssetError, KeyError, FileNotFoundError, ValueError, RuntimeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"efsora: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
