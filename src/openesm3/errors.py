"""User-facing errors.

Every problem caused by the user's input (a file, a sequence, a weight file, a vocabulary directory) raises a
subclass of :class:`OpenESM3Error` whose message names the item and the problem. The CLI prints such messages
as one line; anything else is a bug and is reported as an internal error.
"""

from __future__ import annotations


class OpenESM3Error(Exception):
    """Base class of errors that are the user's to fix; the message is complete and self-contained."""


class InputError(OpenESM3Error, ValueError):
    """Invalid input data: a sequence, a track, a token tensor, a prompt."""


class StructureFileError(InputError):
    """A structure file that cannot be read: the message names the file and the problem."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class OutputsExistError(InputError):
    """Files the command would replace are already there (an earlier run's) and ``--overwrite`` was not given: the
    command stopped before doing anything (its ``--record`` file, the record of that earlier run, is kept)."""


class TokenizationError(InputError):
    """A value that has no token on its track (e.g. an unknown InterPro id, an SS8 letter outside GHITEBSC)."""


class WeightsError(OpenESM3Error):
    """Missing, unreadable or mismatched model weights."""


class VocabularyError(OpenESM3Error):
    """Missing or malformed vocabulary files (function keywords, InterPro, LSH hyperplanes, residue labels)."""


class DependencyError(OpenESM3Error):
    """An optional dependency a feature needs is not installed; the message says what to install."""
