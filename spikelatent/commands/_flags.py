"""Parsed command-line flags handed to a workflow's keyword arguments."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from typing import Any


def flag_keywords(
    args: argparse.Namespace, flags: Mapping[str, str] | Iterable[str], given_only: bool = False
) -> dict[str, Any]:
    """``{keyword: args.<dest>}`` for each ``dest -> keyword`` of ``flags``; a plain name is both
    the flag's dest and the workflow's keyword. ``given_only``: leave out flags parsed as None
    (not given), so the workflow's own defaults apply."""
    pairs = flags.items() if isinstance(flags, Mapping) else ((name, name) for name in flags)
    return {keyword: getattr(args, dest) for dest, keyword in pairs
            if not given_only or getattr(args, dest) is not None}
