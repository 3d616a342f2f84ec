"""Every shell and Python block of README.md and docs/*.md, run as written on the embedded data.

The blocks of one page run in order in one fresh folder (its Python blocks share one namespace,
as in a notebook), after two kinds of edits, both listed below with their reasons:

* :data:`REWRITES` turn data sets that need downloaded files into the embedded digits and shrink
  budgets (epochs, samples, trials); :func:`budget` adds small budgets to each ``spikelatent``
  command that has none (``--limit``, ``--latent-dim``, ...). Nothing else of a command changes.
* :data:`PREPARE` makes the files and names a page only refers to (a recording ``session.nwb``,
  a folder of photographs, the ``images`` of a fragment) before the block that needs them.

Shell lines run in this process (``spikelatent ...`` through ``spikelatent.cli.main``, so one
import of torch serves them all; ``python -c`` through ``exec``); commands that cannot run here
(installers, servers, clusters) are in :data:`SKIPPED_COMMANDS` with the reason. A new block
needs nothing here unless it names such a file or command: a failure says which.

Slow (minutes): CI runs it; the quick loop deselects it with ``-m "not slow"``.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)

#: (pattern, replacement, why) applied to every block before it runs, in this order.
REWRITES = [
    (r"--data (?:mnist|fashion-mnist)\b", "--data digits",
     "MNIST and Fashion-MNIST need downloaded files; digits ship with scikit-learn"),
    (r'make_datamodule\("mnist"\)', 'make_datamodule("digits")', "the same, in Python"),
    (r" --data-dir ~/data", "", "digits need no data folder"),
    (r"~/(stimuli|photos)\b", r"\1", "the page's folder of images, made by PREPARE"),
    (r"(--resume \S+) --epochs \d+", r"\1 --epochs=2", "budget: one epoch more than the run had"),
    (r"--epochs \d+", "--epochs 1", "budget"),
    (r"(?<!-)\bepochs=\d+", "epochs=1, limit=100, latent_dim=8", "budget (FitConfig in Python)"),
    (r"--n-samples \d+", "--n-samples 100", "budget: generated images of evaluate"),
    (r"\bn_samples=2000\b", "n_samples=100, kid_subsets=5", "budget (evaluate_run)"),
    (r"\bn_samples=\(5000, 10000\)", "n_samples=(50, 100)", "budget (generation_metrics)"),
    (r"--n-stimuli \d+", "--n-stimuli 20", "budget: analyze's stimuli"),
    (r"--trials \d+", "--trials 2", "budget: trials of analyze, export-nwb, similarity"),
    (r"\bn_trials=\d+", "n_trials=4", "budget: spikelatent.population (even: crossnobis splits)"),
    (r"--mc-samples \d+", "--mc-samples 2", "budget"),
    (r"\bn_shuffles=\d+", "n_shuffles=20", "budget"),
    (r"export-nwb RUN\b", "export-nwb runs/mnist-negbio", "RUN stands for a run directory"),
]

#: Options added to a ``spikelatent`` command when it does not give them (small budgets).
BUDGETS = {
    "fit": ["--limit", "100", "--latent-dim", "8", "--epochs", "1", "--no-progress"],
    "analyze": ["--n-stimuli", "20", "--trials", "2", "--shattering-images", "100",
                "--n-jobs", "1", "--no-progress"],
    "evaluate": ["--n-samples", "100", "--kid-subsets", "5", "--kid-subset-size", "50",
                 "--no-progress"],
    "similarity": ["--trials", "2", "--n-boot", "10", "--no-progress"],
    "export-nwb": ["--trials", "2"],
}
#: negbio-hierarchical sets its units by its grid (half the image), not --latent-dim: one scale,
#: group and channel on 16x16 digits (64 units) instead; the page's Python reads 16x16 digits too.
HIERARCHICAL_BUDGET = ["--scales", "1", "--groups", "1", "--hierarchy-channels", "8",
                       "--latent-channels", "1", "--data-option", "image_size=16"]
#: page -> [(pattern, replacement, why)], after REWRITES.
PAGE_REWRITES = {
    "docs/hierarchical.md": [(r'make_datamodule\("digits"\)', 'make_datamodule("digits", image_size=16)',
                              "the digits of HIERARCHICAL_BUDGET")],
}

#: Commands that do not run here, with the reason.
SKIPPED_COMMANDS = {
    "pip": "installation: CI installs with the README's command",
    "pytest": "the test suite itself (CI runs it)",
    "mkdocs": "the site: CI runs mkdocs build --strict",
    "tensorboard": "a server",
    "srun": "a SLURM cluster",
    "torchrun": "several GPUs",
}
#: Shell lines that do not run here although their command does, with the reason.
SKIPPED_LINES = [
    (r"python -m pytest", "the test suite itself (CI runs the notebook with nbmake)"),
    (r"--accelerator gpu|--devices [2-9]", "several GPUs"),
    (r"~/imagenet|--data frames\.npy|--data movie\.h5",
     "a collection of the reader's own (tests/test_streaming.py runs the streamed route on data "
     "it makes)"),
]

#: page -> (text of the error, why): a documented call that fails for a reason fixed elsewhere.
#: The page passes up to that call; once it runs, the entry must go (the test says so).
KNOWN_FAILURES: dict[str, tuple[str, str]] = {}

# ---------------------------------------------------------------- stand-ins for named files
_RECORDING = """
import numpy as np, spikelatent
from spikelatent.nwb import write_synthetic_recording
_images, _ = spikelatent.make_datamodule("digits").split_tensors("test", 40)
np.save("stim.npy", _images.numpy())
write_synthetic_recording("session.nwb", _images.numpy(), n_units=12, n_trials=4)
"""
_SESSION_TABLES = _RECORDING + """
from pynwb import NWBHDF5IO
with NWBHDF5IO("session.nwb", "a") as _io:   # the other interval tables the pages name
    _file = _io.read()
    for _start in (0.0, 20.0, 40.0):
        _file.add_epoch(start_time=_start, stop_time=_start + 20.0)
    from pynwb.epoch import TimeIntervals
    _flashes = TimeIntervals(name="flashes", description="flashes")
    for _start in np.arange(1.0, 50.0, 2.0):
        _flashes.add_interval(start_time=float(_start), stop_time=float(_start) + 0.25)
    _file.add_time_intervals(_flashes)
    _io.write(_file)
"""
_IMAGE_FOLDERS = """
from pathlib import Path
import numpy as np
from PIL import Image
_rng = np.random.default_rng(0)
for _label in ("grating", "noise"):
    Path("stimuli", _label).mkdir(parents=True, exist_ok=True)
    for _i in range(20):
        Image.fromarray(_rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            f"stimuli/{_label}/{_i}.png")
import skimage.data
Path("photos").mkdir(exist_ok=True)
for _name in ("camera", "astronaut", "coffee", "rocket"):
    Image.fromarray(getattr(skimage.data, _name)()).save(f"photos/{_name}.png")
"""
_TINY_RUN = """
from spikelatent.cli import main as _main
assert _main(["fit", "--data", "digits", "--limit", "100", "--latent-dim", "8", "--epochs", "1",
              "--no-progress", "--out", "runs/mnist-negbio"]) == 0
import spikelatent
from spikelatent.data import make_datamodule
model = spikelatent.load("runs/mnist-negbio")
data = make_datamodule("digits")
images, labels = data.split_tensors("test", 40)
"""

#: page -> [(first words of the block before which it runs, Python code)]: the files and names
#: a page refers to without making them.
PREPARE = {
    "README.md": [("", _RECORDING + _IMAGE_FOLDERS)],
    "docs/data.md": [("", _IMAGE_FOLDERS + """
np.savez("stimuli.npz", images=_rng.random((40, 28, 28)).astype(np.float32),
         labels=np.arange(40) % 4)
import h5py
with h5py.File("recording.h5", "w") as _file:
    _file["stimuli/images"] = _rng.random((40, 28, 28)).astype(np.float32)
""")],
    "docs/evaluation.md": [("from spikelatent.metrics import", """
import spikelatent
from spikelatent.data import make_datamodule
data = make_datamodule("digits")
model = spikelatent.load("runs/digits-pvae")
test_images, _ = data.split_tensors("test")
images = test_images[:40]
recons = model.reconstruct(images)
""")],
    "docs/model-kinds.md": [("", _TINY_RUN.replace("runs/mnist-negbio", "runs/digits-negbio"))],
    "docs/preprocessing.md": [("", _TINY_RUN.replace("runs/mnist-negbio", "runs/digits-negbio"))],
    "docs/nwb.md": [("", _TINY_RUN + _RECORDING.replace("session.nwb", "recording.nwb") + """
from spikelatent.populations import population as _population
from spikelatent.io import write_netcdf_atomic
write_netcdf_atomic(_population(model, images, labels=labels, n_trials=2),
                    "runs/mnist-negbio/population.nc")
Path = __import__("pathlib").Path
Path("subject.yaml").write_text("species: Mus musculus\\nage: P90D\\nsex: F\\n")
"""), ("from spikelatent.nwb import read_counts, population_counts", _SESSION_TABLES)],
    "docs/receptive-fields.md": [("", """
from spikelatent.cli import main as _main
assert _main(["fit", "--data", "natural-patches", "--arch", "linear", "--latent-dim", "8",
              "--epochs", "1", "--no-progress", "--out", "runs/np"]) == 0
""")],
    "docs/recordings.md": [("", _SESSION_TABLES + _TINY_RUN), ("from spikelatent import analysis\n\nfano", """
import numpy as np, xarray as xr
_rng = np.random.default_rng(0)
train_a, train_b = np.sort(_rng.uniform(0, 600, 900)), np.sort(_rng.uniform(0, 600, 1200))
counts_by_condition = xr.DataArray(_rng.poisson(3.0, (2, 10, 12, 4)),
                                   dims=("condition", "trial", "stimulus", "unit"))
"""), ("from spikelatent import analysis\n\n# Counts", """
import numpy as np
_rng = np.random.default_rng(1)
spike_times = [np.sort(_rng.uniform(0, 100, 400)) for _ in range(5)]   # seconds, per unit
events = np.arange(2.0, 98.0, 3.0)
stimulus_of_each_event = np.arange(len(events)) % 4
""")],
    "docs/training.md": [("from spikelatent import FitConfig, fit, load", """
from spikelatent.data import make_datamodule
images, _ = make_datamodule("digits").split_tensors("test", 10)
""")],
}


# ------------------------------------------------------------------------------- the runner
def page_blocks(page: str) -> list[tuple[int, str, str]]:
    """(line, language, text) of every bash and python block of ``page``."""
    text = (ROOT / page).read_text()
    return [(text[:m.start()].count("\n") + 1, m.group(1), m.group(2))
            for m in BLOCK.finditer(text)]


def rewrite(text: str, page: str = "") -> str:
    for pattern, replacement, _ in [*REWRITES, *PAGE_REWRITES.get(page, [])]:
        text = re.sub(pattern, replacement, text)
    return text


def shell_lines(block: str) -> list[str]:
    """The block's commands: continuation lines joined, quotes spanning lines kept together."""
    lines, pending = [], ""
    for line in block.replace("\\\n", " ").splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        if words:
            lines.append(pending)
        pending = ""
    assert not pending, f"unclosed quote in {block!r}"
    return lines


def budget(argv: list[str]) -> list[str]:
    """``argv`` (after ``spikelatent``) with the small budgets of :data:`BUDGETS` it lacks."""
    command = argv[0]
    if command == "fit" and "--resume" in argv:
        return argv  # a resumed run keeps its configuration; --epochs was rewritten to 1 more
    extra: list[str] = []
    options = BUDGETS.get(command, [])
    if command == "analyze" and any(a.endswith(".nwb") for a in argv):
        options = ["--no-progress"] if "--no-progress" not in argv else []
    if command == "export-nwb" and "--population" in argv:
        options = []  # a saved population is exported as it is
    if command == "fit" and "negbio-hierarchical" in argv:
        options = [*HIERARCHICAL_BUDGET, "--limit", "100", "--epochs", "1", "--no-progress"]
    index = 0
    while index < len(options):
        option = options[index]
        takes_value = index + 1 < len(options) and not options[index + 1].startswith("--")
        if option not in argv and not (option == "--latent-dim" and "--config" in argv):
            extra += options[index:index + 1 + takes_value]
        index += 1 + takes_value
    return [*argv, *extra]


def expand(words: list[str]) -> list[str]:
    """Shell globbing of ``runs/mnist-*`` (sorted; a pattern without match stays as it is)."""
    expanded: list[str] = []
    for word in words:
        matches = sorted(glob.glob(word)) if any(c in word for c in "*?[") else []
        expanded += matches or [word]
    return expanded


def run_shell(line: str, skipped: list[str], setenv=os.environ.__setitem__) -> None:
    from spikelatent.cli import main

    for pattern, reason in SKIPPED_LINES:
        if re.search(pattern, line):
            skipped.append(f"{line.strip()[:60]}: {reason}")
            return
    loop = re.fullmatch(r"\s*for (\w+) in (.+?); do (.+?); done\s*(#[^\"']*)?", line, re.DOTALL)
    if loop:
        name, words, body, _ = loop.groups()
        for value in expand(shlex.split(words)):
            run_shell(re.sub(rf'"?\$\{{?{name}\}}?"?', shlex.quote(value), body), skipped, setenv)
        return
    words = shlex.split(line, comments=True)
    if words[0] == "export":
        for assignment in words[1:]:
            key, _, value = assignment.partition("=")
            setenv(key, value)
    elif words[0] in SKIPPED_COMMANDS:
        skipped.append(f"{line.strip()[:60]}: {SKIPPED_COMMANDS[words[0]]}")
    elif words[0] == "spikelatent":
        argv = budget(expand(words[1:]))
        assert main(argv) == 0, f"spikelatent {' '.join(argv)} failed (exit status above)"
    elif words[:2] == ["python", "-c"]:
        exec(compile(textwrap.dedent(words[2]), "<python -c>", "exec"), {"__name__": "__main__"})
    else:
        raise AssertionError(f"{words[0]}: add it to SKIPPED_COMMANDS with the reason, or run it")


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_every_example_of_the_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "__main__"}
    preparations = list(PREPARE.get(page, []))
    skipped: list[str] = []
    for line, language, text in page_blocks(page):
        for start, code in [p for p in preparations if text.startswith(p[0])]:
            preparations.remove((start, code))
            exec(compile(code, f"PREPARE[{page!r}]", "exec"), namespace)
        where = f"{page}:{line}"
        try:
            if language == "python":
                exec(compile(rewrite(text, page), where, "exec"), namespace)
            else:
                for command in shell_lines(rewrite(text, page)):
                    run_shell(command, skipped, monkeypatch.setenv)
        except BaseException as error:
            known = KNOWN_FAILURES.get(page)
            if known and known[0] in str(error):
                pytest.xfail(f"{where}: {known[1]}")
            raise AssertionError(f"the block at {where} failed: {type(error).__name__}: "
                                 f"{str(error)[:500]}") from error
    assert not preparations, f"PREPARE entries match no block of {page}: {preparations}"
    assert page not in KNOWN_FAILURES, f"{page} runs now: remove its KNOWN_FAILURES entry"
