"""``trl-plugins docs [PAGE] [--example [--to DIR]]``: the shipped doc pages (one printed), and a copy of the example
plugin package to start a plugin from."""

from __future__ import annotations

from ..errors import UsageError
from .shipped import EXAMPLE_NAME, copy_out, doc_pages, example_root

NAME = "docs"
HELP = "list the shipped doc pages, print one, or copy the example plugin"


def add_arguments(parser) -> None:
    parser.add_argument("page", nargs="?", help="a page name: plugins, memory, distributed, orpo, raft, ...")
    parser.add_argument("--example", action="store_true", help="copy the example plugin package into --to (default: here)")
    parser.add_argument("--to", metavar="DIR")


def run(args, rest: list[str]) -> int:
    if args.example:
        target = copy_out(example_root(), args.to, EXAMPLE_NAME)
        print(f"copied the example plugin to {target} (pip install -e {target}; then trl-plugins list)")
        return 0
    pages = doc_pages()
    if args.page:
        page = pages.get(args.page.removesuffix(".md").replace("-", "_"))
        if page is None:
            raise UsageError(f"no doc page {args.page!r}; pages: {', '.join(pages)}")
        print(page.read_text(), end="")
        return 0
    for name, path in pages.items():
        print(f"{name:20s} {path}")
    print(f"\nexample plugin: {example_root()} (copy it: trl-plugins docs --example)")
    return 0
