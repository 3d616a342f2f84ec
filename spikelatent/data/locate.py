"""Where dataset files are looked for, and the one-line error when they are not found.

The search order, for every dataset that needs files:

1. the ``data_dir`` argument (CLI ``--data-dir``): the folder that holds the files itself, or a data
   root holding them in a sub-folder;
2. every folder listed in ``$SPIKELATENT_DATA`` (``os.pathsep``-separated), as a data root;
3. the platform cache, ``platformdirs.user_cache_dir("spikelatent")/data``, as a data root
   (``--download`` writes here when no ``data_dir`` is given);
4. system locations (only Fashion-MNIST: Debian's ``dataset-fashion-mnist`` package,
   ``/usr/share/datasets/fashion-mnist/``).

Inside a data root ``D`` each dataset has its own sub-folders (``D/mnist/`` or torchvision's own
``D/MNIST/raw/``, ...), listed in :data:`FILE_LAYOUTS`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from spikelatent.errors import DatasetNotFoundError, SpikelatentError

#: Environment variable naming extra data roots (``os.pathsep``-separated).
DATA_ENV_VAR = "SPIKELATENT_DATA"

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IDX_FILE_LIST = ", ".join(f"{name}.gz" for name in _IDX_FILES)


@dataclass(frozen=True)
class FileLayout:
    """Which files make a dataset complete and where, relative to a data root, they may sit."""

    dataset: str
    #: Files (or folders) that must all be present in the dataset's folder.
    required: tuple[str, ...]
    #: Candidate folders relative to each data root, in the order tried.
    subfolders: tuple[str, ...]
    #: Also accept the files directly inside ``data_dir`` (the folder the user named).
    direct_in_data_dir: bool
    #: A required file ``f`` also counts as present when ``f.gz`` is (IDX files).
    gzip_allowed: bool
    #: How to place the files; ends the error message.
    placement: str


def _idx_layout(dataset: str, subfolders: tuple[str, ...], hint: str = "") -> FileLayout:
    """The layout of an MNIST-format dataset: the four IDX files, gzipped or not."""
    placement = f"put the four IDX files ({_IDX_FILE_LIST}; gzipped or not) in one of them"
    return FileLayout(
        dataset=dataset,
        required=_IDX_FILES,
        subfolders=subfolders,
        direct_in_data_dir=True,
        gzip_allowed=True,
        placement=f"{placement} ({hint})" if hint else placement,
    )


FILE_LAYOUTS: dict[str, FileLayout] = {
    "mnist": _idx_layout("mnist", ("mnist", "MNIST/raw")),
    "fashion-mnist": _idx_layout(
        "fashion-mnist",
        ("fashion-mnist", "FashionMNIST/raw"),
        hint="Debian: apt-get install dataset-fashion-mnist",
    ),
    "cifar16": FileLayout(
        dataset="cifar16",
        required=(
            "data_batch_1",
            "data_batch_2",
            "data_batch_3",
            "data_batch_4",
            "data_batch_5",
            "test_batch",
            "batches.meta",
        ),
        subfolders=("cifar-10-batches-py", "cifar10/cifar-10-batches-py"),
        direct_in_data_dir=True,
        gzip_allowed=False,
        placement=(
            "extract CIFAR-10's cifar-10-python.tar.gz so that its cifar-10-batches-py folder "
            "(data_batch_1..5, test_batch, batches.meta) is one of them"
        ),
    ),
    "celeba64": FileLayout(
        dataset="celeba64",
        required=(
            "img_align_celeba",
            "list_attr_celeba.txt",
            "identity_CelebA.txt",
            "list_bbox_celeba.txt",
            "list_landmarks_align_celeba.txt",
            "list_eval_partition.txt",
        ),
        subfolders=("celeba",),
        direct_in_data_dir=True,
        gzip_allowed=False,
        placement=(
            "put the folder img_align_celeba/ (unzipped img_align_celeba.zip) and the five files "
            "list_attr_celeba.txt, identity_CelebA.txt, list_bbox_celeba.txt, "
            "list_landmarks_align_celeba.txt, list_eval_partition.txt in one of them"
        ),
    ),
}

#: System-wide folders tried after the data roots (read at call time, so tests can patch them).
SYSTEM_DIRS: dict[str, list[Path]] = {
    "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],
}


def cache_data_dir() -> Path:
    """The platform cache data root, ``user_cache_dir("spikelatent")/data`` (honours $XDG_CACHE_HOME)."""
    return Path(platformdirs.user_cache_dir("spikelatent")) / "data"


def data_roots(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Data roots in search order: ``data_dir``, each ``$SPIKELATENT_DATA`` entry, the cache."""
    roots: list[Path] = []
    if data_dir is not None and str(data_dir) != "":
        roots.append(Path(data_dir).expanduser())
    for entry in os.environ.get(DATA_ENV_VAR, "").split(os.pathsep):
        if entry.strip():
            roots.append(Path(entry.strip()).expanduser())
    roots.append(cache_data_dir())
    return roots


def _layout(name: str) -> FileLayout:
    try:
        return FILE_LAYOUTS[name]
    except KeyError:
        raise SpikelatentError(
            f"{name!r} needs no files; datasets read from disk: {', '.join(FILE_LAYOUTS)}"
        ) from None


def candidate_folders(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Every folder that may hold dataset ``name``'s files, in the order they are tried."""
    layout = _layout(name)
    folders: list[Path] = []
    explicit = Path(data_dir).expanduser() if data_dir is not None and str(data_dir) else None
    for root in data_roots(data_dir):
        if layout.direct_in_data_dir and explicit is not None and root == explicit:
            folders.append(root)
        folders.extend(root / sub for sub in layout.subfolders)
    folders.extend(SYSTEM_DIRS.get(name, []))
    # The same folder may be reached twice (e.g. data_dir equal to $SPIKELATENT_DATA).
    return list(dict.fromkeys(folders))


def missing_files(name: str, folder: Path) -> list[str]:
    """The required files of dataset ``name`` that ``folder`` lacks (empty when complete)."""
    layout = _layout(name)
    missing = []
    for required in layout.required:
        path = folder / required
        if path.exists() or (layout.gzip_allowed and path.with_name(path.name + ".gz").exists()):
            continue
        missing.append(required)
    return missing


def not_found_error(
    name: str, tried: list[Path], incomplete: list[str], note: str | None = None,
    download_failed: bool = False,
) -> DatasetNotFoundError:
    """Build the one-line error naming the dataset, every path tried and how to place the files."""
    parts = [f"{name}: no data found in {', '.join(str(path) for path in tried)}"]
    if incomplete:
        parts.append("incomplete: " + "; ".join(incomplete))
    if note:
        parts.append(note)
    layout = _layout(name)
    if download_failed:  # --download was given and failed: retrying it offline is no advice
        parts.append(
            f"check the network connection (or proxy) and retry, or {layout.placement[:1].lower()}"
            f"{layout.placement[1:]}, pass --data-dir DIR or set ${DATA_ENV_VAR}=DIR"
        )
    else:
        parts.append(
            f"{layout.placement}, pass --data-dir DIR, set ${DATA_ENV_VAR}=DIR, "
            "or run with --download when online"
        )
    return DatasetNotFoundError(one_line("; ".join(parts)))


def one_line(text: str) -> str:
    """Collapse whitespace (including newlines from library errors) so a message is one line."""
    return " ".join(str(text).split())


def search_dataset_folder(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, note: str | None = None,
    download_failed: bool = False,
) -> Path:
    """The folder holding the files of dataset ``name`` (a key of :data:`FILE_LAYOUTS`).

    ``name`` must already be canonical: :func:`spikelatent.data.find_dataset_root` resolves
    user-typed names first (this module sits below the registry, so it does not know them). Raises
    :class:`~spikelatent.errors.DatasetNotFoundError` (one line, every path tried) when no
    complete folder exists; ``note`` (e.g. why a download failed) is added to that message.
    """
    tried = candidate_folders(name, data_dir)
    incomplete = []
    for folder in tried:
        if not folder.is_dir():
            continue
        missing = missing_files(name, folder)
        if not missing:
            return folder
        if len(missing) < len(FILE_LAYOUTS[name].required):
            incomplete.append(f"{folder} lacks {', '.join(missing)}")
    raise not_found_error(name, tried, incomplete, note, download_failed)
