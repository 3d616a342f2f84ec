"""Serial torch kernels split over threads (CPU), reproducible under ``torch.manual_seed``.

On the CPU ``torch._standard_gamma`` (one element at a time under the generator's lock) and
``torch._standard_gamma_grad`` are serial kernels, about 55 ns per element each on the 2-core development
machine. Large tensors are split into a fixed number of chunks, each with its own ``torch.Generator``
seeded from the default generator and processed on a small thread pool (torch releases the GIL inside its
kernels). The chunk count is fixed, so results follow ``torch.manual_seed`` and do not depend on the
number of threads.

Pool threads must never start OpenMP teams of their own. torch's Gamma kernels called from a pool thread
on 32,768 elements or more (torch's grain size) start one; libgomp then manages more threads than there
are cores and, for the rest of the process, stops spinning at its barriers, so every parallel op
afterwards (convolutions included) pays a sleep and a wake-up. Measured on 2 cores: a (128, 256) relaxed
Gumbel step went from 5 to 10 ms, with 190 instead of 30 voluntary context switches per call. Pool tasks
therefore run kernels on pieces below the grain size (``in_serial_pieces``).

The other side of that coin: right after a parallel op, torch's idle OpenMP worker keeps spinning on its
core for a while, so a pool gains little on work interleaved with parallel ops. The relaxed samplers'
uniform draws, which were also split here, gained nothing in a training step (same-process A/B on
2 cores, pooled vs ``torch.rand``: DS step 37.3 vs 39.1 ms, MC 71.7 vs 69.0 ms) and lost on their own
once OpenMP kept spinning, so they are plain ``torch.rand`` again. Long Gamma draws still gain (4.2 M
draws right after a parallel op: 97 vs 173 ms; population building draws 128 M), hence the high
``MIN_ELEMENTS_TO_SPLIT``.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

# Below this many elements the pool does not pay: right after a parallel op (as everywhere in a
# training step) torch's spinning OpenMP worker takes the second core. Measured on 2 cores, pooled vs
# serial Gamma draws after a parallel op: 262k 10.4 vs 11.0 ms, 1 M 30 vs 43 ms, 4.2 M 97 vs 173 ms;
# NegBio MC training steps (164k draws) were 3-8 ms faster without the pool.
MIN_ELEMENTS_TO_SPLIT = 1 << 20
# Fixed, so the random stream does not depend on the number of threads.
CHUNKS = 4
# Below torch's grain size (at::internal::GRAIN_SIZE = 32768) a kernel runs on the calling thread alone.
SERIAL_PIECE = 16384

_pool: ThreadPoolExecutor | None = None
_pool_workers = 0
_pool_lock = threading.Lock()


def _reset_pool_in_child() -> None:
    # A forked child (DataLoader worker, DDP by fork) inherits the pool object but not its threads.
    global _pool, _pool_workers
    _pool, _pool_workers = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pool_in_child)


def splits(tensor: torch.Tensor) -> bool:
    """Whether work on ``tensor`` is split into chunks (CPU and large enough)."""
    return tensor.device.type == "cpu" and tensor.numel() >= MIN_ELEMENTS_TO_SPLIT


def map_chunks(function, *chunk_lists) -> list:
    """[function(*args) for args in zip(*chunk_lists, strict=True)], on up to torch.get_num_threads() threads."""
    global _pool, _pool_workers
    workers = min(torch.get_num_threads(), CHUNKS)
    if workers < 2:
        return [function(*args) for args in zip(*chunk_lists, strict=True)]
    with _pool_lock:
        if _pool is None or _pool_workers != workers:  # new pool when torch's thread count changed
            # The old pool is not shut down (a caller may still be submitting to it); its idle
            # threads exit once it is garbage-collected.
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spikelatent")
            _pool_workers = workers
        pool = _pool
    futures = [pool.submit(function, *args) for args in zip(*chunk_lists, strict=True)]
    return [future.result() for future in futures]


def in_serial_pieces(function, *tensors: torch.Tensor) -> torch.Tensor:
    """function(*tensors) for 1-D tensors of one length, applied to consecutive pieces of SERIAL_PIECE.

    Keeps a kernel from starting an OpenMP team when called from a pool thread (see the module notes).
    Same values as one call for elementwise kernels; a generator passed through ``function`` is
    consumed piece after piece, which is as deterministic as one call.
    """
    pieces = [function(*parts) for parts in zip(*(t.split(SERIAL_PIECE) for t in tensors), strict=True)]
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


def chunk_generators(device: torch.device) -> list[torch.Generator]:
    """CHUNKS generators seeded from the default generator (so ``torch.manual_seed`` governs them)."""
    seeds = torch.randint(0, 2**62, (CHUNKS,)).tolist()
    return [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
