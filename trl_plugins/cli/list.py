"""``trl-plugins list [--json] [--rewards | --backends]``: trainers (reward functions, generation backends) from every
installed plugin; imports no torch, transformers or trl."""

from __future__ import annotations

import json

from ..registry import get_registry

NAME = "list"
HELP = "list installed trainers (reward functions, generation backends)"


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.add_argument("--rewards", action="store_true", help="list reward functions instead of trainers")
    parser.add_argument("--backends", action="store_true",
                        help="list generation backends (recipe key generation_backend) instead of trainers")


def format_columns(spec) -> str:
    """``required [optional]``; a trainer accepting several formats shows each one's, separated by `` | ``."""
    if spec.other_formats:
        from ..formats import FORMATS

        formats = [FORMATS[name] for name in (spec.data_format, *spec.other_formats)]
        return " | ".join(_columns_text(f.required, f.optional) for f in formats)
    return _columns_text(spec.required_columns, spec.optional_columns)


def _columns_text(required, optional) -> str:
    return " ".join(filter(None, [", ".join(required), f"[{', '.join(optional)}]" if optional else ""]))


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    return "\n".join(lines)


def run(args, rest: list[str]) -> int:
    registry = get_registry()
    if args.rewards or args.backends:
        kind, found = ("reward functions", registry.rewards) if args.rewards else ("generation backends",
                                                                                   registry.backends)
        specs = [found[k] for k in sorted(found)]
        if args.json:
            print(json.dumps([s.as_dict() for s in specs], indent=2))
        else:
            rows = [[s.name, f"{s.distribution} {s.version}".strip(), s.summary] for s in specs]
            print(table(rows, ["NAME", "DISTRIBUTION", "SUMMARY"]) if rows else f"no {kind} installed")
        return 0
    specs = [registry.trainers[k] for k in sorted(registry.trainers)]
    if args.json:
        print(json.dumps([s.as_dict() for s in specs], indent=2))
        return 0
    rows = [[s.name, f"{s.distribution} {s.version}".strip(), format_columns(s), s.summary] for s in specs]
    print(table(rows, ["NAME", "DISTRIBUTION", "COLUMNS [optional]", "SUMMARY"]) if rows else "no trainers installed")
    if registry.rewards:
        n = len(registry.rewards)
        print(f"\n{n} reward function{'s' if n != 1 else ''}: {', '.join(sorted(registry.rewards))} (list --rewards)")
    return 0
