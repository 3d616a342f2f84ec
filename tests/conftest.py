"""Test-session settings.

Under pytest-xdist (``pytest -n auto``) every worker is one process per core: each keeps to one
torch / OpenMP thread, and so do the command-line processes the tests start (they inherit the
environment), so the workers do not oversubscribe the cores.
"""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
