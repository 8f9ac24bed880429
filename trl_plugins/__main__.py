"""``python -m trl_plugins`` is the ``trl-plugins`` command (also what ``accelerate launch -m trl_plugins`` runs)."""

from .cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
