"""``trl-plugins compare --methods a,b,c --config TASK.yaml [--budget N] [--output_dir DIR]``: several methods from
the same base on the same task, held-out prompts and budget; one table, one plot, one JSON. Docs: docs/compare.md.

    task.py     the TASK.yaml schema, read strictly        budget.py   the equal-budget rule
    run.py      checks every method, then runs each         worker.py   one method's run (a subprocess)
    heldout.py  held-out scores of non-sampling methods     report.py   each method's figures, the table, plot, JSON

The command itself (arguments, dispatch) is ``trl_plugins/cli/compare.py``.
"""
