#!/usr/bin/env bash
# CI job: the lowest versions pyproject.toml allows. Every direct dependency (and dev tool) is
# installed at its floor with uv's --resolution lowest-direct (indirect ones at their newest that
# fit), then the test suite runs. A floor the code outgrows fails
# here, not on a user's machine. Started by .ci/run unless CI_LOWEST=0.
set -euo pipefail
cd "$(dirname "$0")/.."
export MPLBACKEND=Agg
export PYTHONUNBUFFERED=1
VENV="${CI_LOWEST_VENV:-.ci-lowest-venv}"
rm -rf "$VENV"
python3 -m pip install --quiet --target "${VENV}-uv" "uv>=0.4"
UV="${VENV}-uv/bin/uv"
"$UV" venv --quiet --python python3 "$VENV"
# PyPI itself, not a local mirror: the floors must exist where users install from.
"$UV" pip install --quiet --python "$VENV/bin/python" --index-url https://pypi.org/simple \
    --resolution lowest-direct -e ".[dev]"
# shellcheck disable=SC1091
source "$VENV/bin/activate"
echo "lowest direct dependencies:"
"$UV" pip list --python "$VENV/bin/python" 2>/dev/null | grep -iE \
    '^(torch|torchvision|numpy|scipy|xarray|h5netcdf|pynwb|scikit-learn|matplotlib|lightning|torchmetrics|tqdm|pyyaml|platformdirs|torch-fidelity|joblib|threadpoolctl|pytest|pytest-xdist|ruff|nwbinspector|scikit-image|nbmake|ipykernel|mkdocs-material|mkdocstrings-python|pynapple|rsatoolbox|h5py|pillow|dask|distributed) '
# No separate fit / resume / export commands or docs build here: the tests below run fit, resume
# and export-nwb at the floors (tests/test_training.py, test_resume.py, test_nwb.py), and the main
# job builds the docs.
# The suite but the slow docs examples, the notebooks and three whole-command matrices (every
# model kind x every command, the quiet-terminal lines, the training options matrix): the main
# job runs those at the newest versions; at the floors every dependency is still exercised by the
# unit and command tests (fit, resume, DDP, loggers, analyze, similarity, NWB), in half the time.
pytest -q -n auto -m "not slow" -p no:cacheprovider tests \
    --ignore=tests/test_every_model_kind.py --ignore=tests/test_quiet_terminal.py \
    --ignore=tests/test_training_matrix.py
rm -rf "$VENV" "${VENV}-uv"
