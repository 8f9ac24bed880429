"""``trl-plugins compare --methods a,b,c --config TASK.yaml [--budget N] [--seeds N] [--output_dir DIR]``: several
methods from the same base on one task with an equal budget, each with N training seeds; one table, plot and JSON
(trl_plugins/compare/, docs/compare.md)."""

from __future__ import annotations

NAME = "compare"
HELP = "run several methods on one task with an equal budget; one table"


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, metavar="TASK",
                        help="a task file or a shipped one (compare/arithmetic)")
    parser.add_argument("--methods", help="comma-separated trainer names (default: every method in the task file)")
    parser.add_argument("--budget", type=int, help="generated samples per sampling method = training examples per other")
    parser.add_argument("--output_dir", help="default outputs/compare-<task name>")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="train every method with N training seeds (the task's seed and the N - 1 after it); the "
                        "table shows the mean ± SE over seeds")


def run(args, rest: list[str]) -> int:
    from ..compare.run import compare

    return compare(args.config, args.methods, args.budget, args.output_dir, args.seeds)
