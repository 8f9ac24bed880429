"""Errors a user can fix. The CLI prints each as one line (no traceback) and exits with code 2."""

from __future__ import annotations


class TrlPluginsError(Exception):
    """Base class: a problem with the user's input, named in one line. Exit code 2."""

    exit_code = 2

    def lines(self) -> list[str]:
        return [str(self)]


class UsageError(TrlPluginsError):
    """Bad command line, unknown name, or a recipe key/value that does not parse."""


class ConfigError(UsageError):
    """A recipe (YAML) problem: unknown key, wrong type, bad value, refused output directory. Several problems of one
    recipe are one error: a header line, then one line per problem (``details``)."""

    def __init__(self, message: str, details: list[str] | None = None):
        self.message, self.details = message, list(details or [])
        super().__init__("\n".join([message, *self.details]))

    def lines(self) -> list[str]:
        return [self.message, *self.details]


class PluginError(TrlPluginsError):
    """A plugin that cannot be loaded, registers something malformed, or clashes with another plugin."""


class ModelSourceError(TrlPluginsError):
    """A model source that cannot be resolved (e.g. the embedded model's package is not installed)."""


class DataError(TrlPluginsError):
    """One or more dataset problems, each naming the split, row and column where it was found."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))

    def lines(self) -> list[str]:
        return list(self.problems)


class NothingTrainedError(TrlPluginsError):
    """A run that finished without one optimizer step (e.g. a sampling run whose every sample was cut off or scored
    None, so no iteration selected anything). The model is saved as it was; exit code 3."""

    exit_code = 3
