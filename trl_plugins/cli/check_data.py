"""``trl-plugins check-data NAME --config RECIPE.yaml [--key value ...]``: every check of ``train`` that needs no
model (recipe, launch, data format, the method's checks, token lengths), then the data and length lines."""

from __future__ import annotations

from .resolve import print_recipe_help, resolve_trainer

NAME = "check-data"
HELP = "check a recipe's dataset, load no model"
TAKES_RECIPE = True


def run(args, rest: list[str]) -> int:
    from ..run import flow

    spec = resolve_trainer(NAME, args.name)
    if print_recipe_help(NAME, spec, rest):
        return 0
    prepared = flow.prepare_run(spec, rest, check_output=False)
    print(prepared.data_summary.line())
    print(prepared.length_line)
    return 0
