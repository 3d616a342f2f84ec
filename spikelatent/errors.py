"""Errors that the CLI turns into one line on stderr and exit status 2."""

from __future__ import annotations


class SpikelatentError(ValueError):
    """A user-facing error: bad input, missing files, invalid options.

    The message is one line that says what is wrong and what to do about it.
    It subclasses ``ValueError`` so library callers can catch it as usual.
    """


class DatasetNotFoundError(SpikelatentError, FileNotFoundError):
    """A dataset's files were not found in any of the places looked in."""


class CheckpointError(SpikelatentError):
    """A checkpoint or run directory is missing, corrupt or incompatible."""
