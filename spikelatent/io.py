"""Atomic file writing: the one home of the package's writers (JSON, text, CSV, netCDF), and
:func:`read_parsed` for the small text files the package reads (JSON, YAML).

Each writer puts the result under a hidden temporary name beside its target and renames it into
place, so a crash never leaves a half-written file where a reader expects a result. Scripts built
on spikelatent (benchmarks, analyses, notebooks) use the same functions.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spikelatent.errors import SpikelatentError


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a hidden temporary path in ``path``'s folder; rename it to ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it was.
    ``suffix`` (default: ``path``'s own) keeps writers that look at the extension happy.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ending = suffix if suffix is not None else (path.suffix or ".tmp")
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial{ending}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, payload: Any, indent: int = 1) -> Path:
    """Write ``payload`` as JSON (strict: no NaN) to ``path`` atomically and return the path."""
    return write_text_atomic(path, json.dumps(payload, indent=indent, allow_nan=False) + "\n")


def read_parsed(
    path: str | os.PathLike,
    parse: Callable[[str], Any],
    parse_error: type[Exception] | tuple[type[Exception], ...],
    not_found: str,
    invalid: Callable[[Exception], str],
) -> Any:
    """``parse(text of path)``, or a one-line :class:`~spikelatent.errors.SpikelatentError`:
    ``not_found`` when ``path`` is not a file, ``invalid(error)`` when ``parse`` raises
    ``parse_error`` (e.g. ``json.JSONDecodeError``, ``yaml.YAMLError``)."""
    path = Path(path)
    if not path.is_file():
        raise SpikelatentError(not_found)
    try:
        return parse(path.read_text())
    except parse_error as error:
        raise SpikelatentError(invalid(error)) from None


def json_number(value: Any) -> float | None:
    """``value`` as a JSON-safe float: NaN, infinities and non-numbers become None (JSON has no NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def write_netcdf_atomic(
    dataset: Any, path: str | os.PathLike, compress: tuple[str, ...] = ("counts",)
) -> Path:
    """Write an ``xarray.Dataset`` to netCDF-4 (h5netcdf) atomically and return the path.

    The variables named in ``compress`` that the dataset holds are stored gzip-compressed
    (level 1): spike counts are small integers and shrink several-fold, at a modest cost in
    writing time.
    """
    encoding = {name: {"zlib": True, "complevel": 1} for name in compress if name in dataset}
    with atomic_path(path) as temporary:
        dataset.to_netcdf(temporary, engine="h5netcdf", encoding=encoding)
    return Path(path)


def write_csv_atomic(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]],
                     fieldnames: Sequence[str], extrasaction: str = "raise") -> Path:
    """``rows`` under a header of ``fieldnames`` (missing values empty), written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), restval="",
                            extrasaction=extrasaction)
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())
