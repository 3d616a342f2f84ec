"""Atomic file writing for scripts built on spikelatent (benchmarks, analyses, notebooks).

Each writer puts the result under a hidden temporary name beside its target and renames it into
place, so a crash never leaves a half-written file where a reader expects a result. These are the
same functions the package itself writes with (``spikelatent._io``), under a public name.
"""

from spikelatent._io import atomic_path, write_json_atomic, write_netcdf_atomic, write_text_atomic

__all__ = ["atomic_path", "write_json_atomic", "write_netcdf_atomic", "write_text_atomic"]
