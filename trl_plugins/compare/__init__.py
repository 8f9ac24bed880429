"""``trl-plugins compare --methods a,b,c --config TASK.yaml [--budget N] [--output_dir DIR]``: several methods from
the same base on the same task, held-out prompts and budget; one table, one plot, one JSON. Docs: docs/compare.md.

    task.py     the TASK.yaml schema, read strictly        budget.py   the equal-budget rule
    run.py      checks every method, then runs each         worker.py   one method's run (a subprocess)
    heldout.py  held-out scores of non-sampling methods     report.py   each method's figures, the table, plot, JSON
"""

from __future__ import annotations


def add_compare_parser(sub) -> None:
    """The ``compare`` subcommand's arguments (no torch imported)."""
    p = sub.add_parser("compare", help="run several methods on one task with an equal budget; one table")
    p.add_argument("--config", required=True, metavar="TASK", help="a task file or a shipped one (compare/arithmetic)")
    p.add_argument("--methods", help="comma-separated trainer names (default: every method in the task file)")
    p.add_argument("--budget", type=int, help="generated samples per sampling method = training examples per other")
    p.add_argument("--output_dir", help="default outputs/compare-<task name>")


def cmd_compare(args) -> int:
    from .run import compare

    return compare(args.config, args.methods, args.budget, args.output_dir)
