"""The toolkit's single exception type."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


class FmnistError(Exception):
    """A problem the user can fix: bad input, bad config, missing upstream artefact.

    The message is one line that names the file or key at fault and says what to do.
    The command line turns it into that line on stderr and exit code 2.

    Parameters
    ----------
    message : str
        One line: what is wrong, where, and how to fix it.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class Interrupted(FmnistError):
    """The user stopped a long command (SIGINT, Ctrl-C); exit code 130 like any interrupted program."""

    exit_code = 130


class FmnistWarning(UserWarning):
    """Something the user should look at, but not an error (the CLI shows it in yellow)."""


@contextlib.contextmanager
def user_errors(where: str) -> Iterator[None]:
    """Turn a library ``ValueError`` raised inside the block into :class:`FmnistError`.

    Estimators and helpers raise ``ValueError`` for bad arguments, like scikit-learn's; a stage
    wraps the call that takes the user's setting so the message reaches the user as one line,
    prefixed with ``where`` (the config key or file at fault).
    """
    try:
        yield
    except FmnistError:
        raise
    except ValueError as exc:
        raise FmnistError(f"{where}: {exc}") from exc


@contextlib.contextmanager
def unexpected_structure(where: str, fix: str) -> Iterator[None]:
    """Turn a ``KeyError``, ``TypeError``, ``ValueError``, ``AttributeError`` or ``IndexError``
    raised while reading artefacts whose hashes check out (but whose content is not what their
    stage writes: edited by hand, or from another version) into one :class:`FmnistError` line:
    ``where`` names the artefact(s), ``fix`` says what to do."""
    try:
        yield
    except FmnistError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise FmnistError(
            f"{where} does not hold what its stage writes ({type(exc).__name__}: {detail}); {fix}"
        ) from None


def why_not_a_file(path: Path) -> str:
    """Why ``path`` cannot be read as a file, for an error line: ``'is missing'`` or ``'is not a
    regular file'`` (a folder, a pipe, a device, a link to one)."""
    return "is missing" if not (path.exists() or path.is_symlink()) else "is not a regular file"
