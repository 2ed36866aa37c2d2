"""The toolkit's single exception type."""

from __future__ import annotations


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
