"""NWB export of simulated latent populations (:func:`to_nwb`).

Every latent unit of a population becomes one row of the NWB ``Units`` table (a simulated
neuron) and every stimulus presentation one row of the ``trials`` table. Presentations are
ordered **trial-major**: for each trial repeat ``r``, for each stimulus ``s``, presentation
``k = r * n_stimulus + s`` starts at ``k * (trial_duration + inter_trial_interval)`` seconds
and lasts ``trial_duration`` seconds. A unit that emits ``n`` spikes in a presentation gets
``n`` i.i.d. uniform times in the window (the arrival times of a Poisson process given its
count, which is also what the continuous-time relaxation produces; see docs/architecture.md).

Reading counts back (from this or any NWB file) is :mod:`spikelatent.nwb.read`.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from hdmf.data_utils import AbstractDataChunkIterator, DataChunk
from tqdm.auto import tqdm

from spikelatent.errors import SpikelatentError
from spikelatent.io import atomic_path, read_parsed
from spikelatent.spikes import count_array, presentation_windows, uniform_spike_times

__all__ = ["to_nwb", "SUBJECT_FIELDS", "read_subject_yaml", "check_subject"]

# Subject fields a caller may supply (dict keys or YAML keys); all are pynwb.file.Subject arguments.
SUBJECT_FIELDS = (
    "subject_id",
    "description",
    "species",
    "age",
    "sex",
    "strain",
    "genotype",
    "weight",
)
# The fields nwbinspector requires of a real animal; an in-silico population has none of them.
_ANIMAL_FIELDS = ("species", "age", "sex")
# Same forms nwbinspector checks (ISO 8601 duration, optionally a "lower/upper" range).
_DURATION = (
    r"P(?!$)(\d+(?:\.\d+)?Y)?(\d+(?:\.\d+)?M)?(\d+(?:\.\d+)?W)?(\d+(?:\.\d+)?D)?"
    r"(T(?=\d)(\d+(?:\.\d+)?H)?(\d+(?:\.\d+)?M)?(\d+(?:\.\d+)?S)?)?"
)
_SPECIES = r"([A-Z][a-z]* [a-z]+)|(http://purl\.obolibrary\.org/obo/NCBITaxon_\d+)"
_WEIGHT = r"\d+(\.\d+)? (kg|g|mg|ug|μg|ng|pg)"
_RATE_VARIABLES = ("rate", "dispersion", "prob", "variance", "fano_factor")
_UNIT_VARIABLES = ("prior_rate", "prior_dispersion", "prior_fano_factor")
_DESCRIPTIONS = {
    "rate": "posterior mean spike count per presentation window (NB mean r(1-p)/p), per unit",
    "dispersion": "posterior negative-binomial dispersion (total count) r, per unit",
    "prob": "posterior negative-binomial success probability p (paper convention), per unit",
    "variance": "posterior spike-count variance per presentation window, per unit",
    "fano_factor": "posterior Fano factor (variance / mean) of the spike count, per unit",
    "prior_rate": "prior mean spike count per presentation window of this unit",
    "prior_dispersion": "prior negative-binomial dispersion (total count) r of this unit",
    "prior_fano_factor": "prior Fano factor (1/p) of this unit's spike count",
}
# Spike times are written in chunks of this many values (512 KiB of float64).
_CHUNK_SPIKES = 65536


def to_nwb(
    population: xr.Dataset,
    path: str | os.PathLike,
    *,
    trial_duration: float = 1.0,
    inter_trial_interval: float = 0.5,
    subject: Mapping[str, Any] | str | os.PathLike | Any | None = None,
    include_images: Any | None = None,
    include_rates: bool = True,
    session_start_time: datetime | None = None,
    identifier: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    compression: str | None = "gzip",
) -> Path:
    """Write a latent population to an NWB file of simulated spike trains.

    Args:
        population: population dataset (docs/architecture.md): ``counts`` (trial, stimulus, unit)
            non-negative integers, optional ``rate``/``dispersion``/``prob``/``variance``/
            ``fano_factor`` (stimulus, unit), ``prior_*`` (unit), coord ``label`` (stimulus),
            attrs ``model``, ``variant``, ``dataset``, ``checkpoint``, ``spikelatent_version``.
        path: target ``.nwb`` file; written to a temporary file beside it, then renamed.
        trial_duration: length of each presentation window in seconds (the counting window).
        inter_trial_interval: silent gap between consecutive presentations in seconds.
        subject: ``None`` (an in-silico subject naming the model; no species/age/sex invented),
            a dict with keys from :data:`SUBJECT_FIELDS`, a YAML file path holding such a mapping,
            or a ``pynwb.file.Subject``. Missing species/age/sex are reported on one stderr line.
        include_images: optional stimulus images ``(stimulus, C, H, W)`` with C in {1, 3, 4}
            (numpy array or torch tensor); stored as an ``Images`` stimulus template plus an
            ``IndexSeries`` of which image was shown at each presentation.
        include_rates: store the per-stimulus posterior parameters in processing module
            ``latent_rates`` (table ``posterior_parameters``).
        session_start_time: timezone-aware start of the simulated session; default: now (UTC).
        identifier: NWB identifier; default a random UUID4.
        seed: seed of the spike-time generator (same population + seed → same spike times).
        overwrite: replace an existing file at ``path`` (otherwise an error).
        compression: HDF5 filter for the spike times: ``"gzip"`` (about 30% smaller, slower) or ``None``.

    Returns:
        The path written.
    """
    from pynwb import NWBHDF5IO, NWBFile

    target = Path(path)
    _check_target(target, overwrite)
    counts = count_array(population)
    n_trial, n_stimulus, n_unit = counts.shape
    if not (np.isfinite(trial_duration) and trial_duration > 0):
        raise SpikelatentError(
            f"trial_duration must be a positive number of seconds, got {trial_duration!r}"
        )
    if not (np.isfinite(inter_trial_interval) and inter_trial_interval >= 0):
        raise SpikelatentError(
            f"inter_trial_interval must be >= 0 seconds, got {inter_trial_interval!r}"
        )
    if compression not in (None, "gzip"):
        raise SpikelatentError(f"compression must be 'gzip' or None, got {compression!r}")
    if session_start_time is None:
        session_start_time = datetime.now(timezone.utc).replace(microsecond=0)
    elif not isinstance(session_start_time, datetime) or session_start_time.tzinfo is None:
        raise SpikelatentError(
            "session_start_time must be a timezone-aware datetime, e.g. datetime.now(timezone.utc)"
        )
    images = _images_array(include_images, n_stimulus)
    nwb_subject, absent = _make_subject(subject, population.attrs)

    starts, stops = presentation_windows(
        n_trial * n_stimulus, trial_duration, inter_trial_interval
    )
    attrs = {
        key: str(population.attrs.get(key, "unknown"))
        for key in ("model", "variant", "dataset", "checkpoint", "spikelatent_version")
    }
    nwbfile = NWBFile(
        session_description=(
            f"SIMULATED data, no animal was recorded: spike trains of the {n_unit} latent units of "
            f"spikelatent model '{attrs['model']}' (variant {attrs['variant']}) from checkpoint "
            f"{attrs['checkpoint']}, spikelatent version {attrs['spikelatent_version']}, shown "
            f"{n_stimulus} stimuli of dataset '{attrs['dataset']}' x {n_trial} trials."
        ),
        identifier=identifier or str(uuid.uuid4()),
        session_start_time=session_start_time,
        experiment_description=(
            "In-silico experiment: each latent unit of a variational autoencoder with count "
            "(negative-binomial or Poisson) latents is treated as a neuron. Each presentation's "
            "spike count is a hard sample of the unit's posterior given the stimulus image; the "
            "count's spike times are i.i.d. uniform in the presentation window (Poisson-process "
            f"arrival times given the count), drawn with numpy seed {seed}."
        ),
        data_collection=(
            f"Presentations are trial-major (trial repeat outer, stimulus inner), each "
            f"{trial_duration} s long with {inter_trial_interval} s between presentations. "
            "Spike times are continuous float64 seconds."
            + (f" Stimuli: {population.attrs['stimuli']}." if "stimuli" in population.attrs else "")
        ),
        keywords=[
            "simulation",
            "in silico",
            "variational autoencoder",
            "negative binomial",
            "spike counts",
        ],
        was_generated_by=[["spikelatent", attrs["spikelatent_version"]]],
        subject=nwb_subject,
    )
    nwbfile.trials = _trials_table(population, starts, stops, n_trial, n_stimulus)
    nwbfile.units = _units_table(population, counts, starts, stops, seed, compression)
    _add_levels(nwbfile, population)
    if images is not None:
        _add_images(nwbfile, images, trial_duration + inter_trial_interval, n_trial)
    if include_rates:
        _add_rates(nwbfile, population)

    if absent:
        # the animal fields' flags of `spikelatent export-nwb` are --subject-FIELD
        flags = ", ".join(f"--subject-{field}" for field in absent)
        print(
            f"spikelatent: NWB subject has no {'/'.join(absent)} (in-silico population, none "
            f"invented); if the file should describe an animal, supply {flags} (and "
            "--subject-id) or --subject-yaml FILE; in Python to_nwb(..., subject=dict(...))",
            file=sys.stderr,
        )

    # Same directory (so os.replace is an atomic rename); hidden, and still ending in .nwb.
    with atomic_path(target, suffix=".nwb") as temporary, NWBHDF5IO(str(temporary), "w") as io:
        io.write(nwbfile)
    return target


def _check_target(target: Path, overwrite: bool) -> None:
    if not target.parent.is_dir():
        raise SpikelatentError(f"cannot write {target}: directory {target.parent} does not exist")
    if target.is_dir():
        raise SpikelatentError(
            f"cannot write {target}: it is a directory; give a file name ending in .nwb"
        )
    if target.exists() and not overwrite:
        raise SpikelatentError(
            f"{target} already exists; pass overwrite=True (CLI: --overwrite) to replace it"
        )


def _images_array(images: Any, n_stimulus: int) -> np.ndarray | None:
    if images is None or images is False:
        return None
    if images is True:
        raise SpikelatentError(
            "include_images takes the stimulus images (stimulus, C, H, W), not True"
        )
    if hasattr(images, "detach"):  # torch tensor
        images = images.detach().cpu().numpy()
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[0] != n_stimulus or array.shape[1] not in (1, 3, 4):
        raise SpikelatentError(
            f"include_images must have shape (stimulus={n_stimulus}, C in 1/3/4, H, W), got {array.shape}"
        )
    return array


def _make_subject(subject: Any, attrs: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """A pynwb Subject and the list of animal fields (species/age/sex) that it lacks."""
    from pynwb.file import Subject

    if isinstance(subject, Subject):
        return subject, [field for field in _ANIMAL_FIELDS if not getattr(subject, field)]
    if isinstance(subject, (str, os.PathLike)):
        subject = read_subject_yaml(Path(subject))
    if subject is None:
        subject = {}
    if not isinstance(subject, Mapping):
        raise SpikelatentError(
            f"subject must be a dict, a YAML file path or a pynwb Subject, got {type(subject).__name__}"
        )
    unknown = sorted(set(subject) - set(SUBJECT_FIELDS))
    if unknown:
        raise SpikelatentError(
            f"unknown subject field(s) {unknown}; allowed: {', '.join(SUBJECT_FIELDS)}"
        )
    fields = {key: str(value).strip() for key, value in subject.items() if value not in (None, "")}
    _validate_subject(fields)
    model = str(attrs.get("model", "model"))
    variant = str(attrs.get("variant", "")).strip()
    name = f"{model}-{variant}" if variant and variant != model else model
    fields.setdefault("subject_id", re.sub(r"[^A-Za-z0-9._-]+", "-", f"in-silico-{name}"))
    fields.setdefault(
        "description",
        f"In-silico population: the units are the latent units of the spikelatent model "
        f"'{model}' (variant {variant or 'n/a'}), not neurons of an animal.",
    )
    absent = [field for field in _ANIMAL_FIELDS if field not in fields]
    return Subject(**fields), absent


def check_subject(subject: Any) -> None:
    """Raise the one-line :class:`SpikelatentError` that :func:`to_nwb` would raise for
    ``subject`` (a field nwbinspector would flag, an unknown field, an unreadable YAML file),
    so a command can refuse it before the slow work."""
    _make_subject(subject, {})


def read_subject_yaml(path: str | os.PathLike) -> Mapping[str, Any]:
    """The NWB subject fields (keys of :data:`SUBJECT_FIELDS`) in a YAML file, checked."""
    import yaml

    path = Path(path)
    content = read_parsed(
        path,
        yaml.safe_load,
        yaml.YAMLError,
        not_found=f"subject YAML file {path} not found",
        invalid=lambda error: (
            f"subject YAML file {path} is not valid YAML: {str(error).splitlines()[0]}"
        ),
    )
    if isinstance(content, Mapping) and set(content) == {"subject"}:
        content = content["subject"]  # also accept a file with a top-level "subject:" key
    if not isinstance(content, Mapping):
        raise SpikelatentError(
            f"subject YAML file {path} must hold a mapping such as 'species: Mus musculus'"
        )
    return content


def _validate_subject(fields: Mapping[str, str]) -> None:
    """Reject values nwbinspector would flag, with a one-line hint at the expected form."""
    species = fields.get("species")
    if species and not re.fullmatch(_SPECIES, species):
        raise SpikelatentError(
            f"subject species {species!r} must be a Latin binomial ('Mus musculus') or an NCBI "
            "taxonomy link ('http://purl.obolibrary.org/obo/NCBITaxon_10090')"
        )
    age = fields.get("age")
    if age and not (
        re.fullmatch(_DURATION, age)
        or (
            "/" in age
            and all(re.fullmatch(_DURATION, part) or part == "" for part in age.split("/", 1))
        )
    ):
        raise SpikelatentError(
            f"subject age {age!r} must be an ISO 8601 duration such as 'P90D' or 'P2Y', or a range 'P1D/P3D'"
        )
    sex = fields.get("sex")
    allowed_sex = (
        ("XO", "XX")
        if species in ("Caenorhabditis elegans", "C. elegans")
        else ("M", "F", "O", "U")
    )
    if sex and sex not in allowed_sex:
        raise SpikelatentError(f"subject sex {sex!r} must be one of {', '.join(allowed_sex)}")
    weight = fields.get("weight")
    if weight and not re.fullmatch(_WEIGHT, weight, flags=re.IGNORECASE):
        raise SpikelatentError(
            f"subject weight {weight!r} must read '[number] [unit]', e.g. '20.5 g'"
        )
    subject_id = fields.get("subject_id")
    if subject_id and "/" in subject_id:
        raise SpikelatentError(f"subject id {subject_id!r} must not contain '/'")


def _column_values(coord: xr.DataArray) -> np.ndarray:
    """Values HDF5 can store: integers as int64, strings as str, the rest as float64."""
    values = np.asarray(coord.values)
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    if values.dtype.kind in "US" or values.dtype == object:
        return values.astype(str)
    return values.astype(np.float64)


def _trials_table(population: xr.Dataset, starts, stops, n_trial: int, n_stimulus: int):
    from hdmf.common import VectorData
    from pynwb.epoch import TimeIntervals

    stimulus_index = np.tile(np.arange(n_stimulus, dtype=np.int64), n_trial)
    trial_repeat = np.repeat(np.arange(n_trial, dtype=np.int64), n_stimulus)
    columns = [
        VectorData(name="start_time", description="presentation onset in seconds", data=starts),
        VectorData(name="stop_time", description="presentation offset in seconds", data=stops),
        VectorData(
            name="stimulus",
            description="index of the stimulus along the population's stimulus dimension (0-based)",
            data=stimulus_index,
        ),
        VectorData(
            name="trial_repeat",
            description="repeat number of this stimulus (0-based); presentations are trial-major",
            data=trial_repeat,
        ),
    ]
    if "label" in population.coords:
        labels = _column_values(population["label"].transpose("stimulus"))
        columns.append(
            VectorData(
                name="label", description="class label of the stimulus", data=labels[stimulus_index]
            )
        )
    if "stimulus" in population.coords:
        stimulus_ids = _column_values(population["stimulus"])
        if not np.array_equal(stimulus_ids, np.arange(n_stimulus)):
            columns.append(
                VectorData(
                    name="stimulus_id",
                    description="the population's stimulus coordinate value of the stimulus",
                    data=stimulus_ids[stimulus_index],
                )
            )
    return TimeIntervals(
        name="trials",
        description="One row per stimulus presentation (trial-major: trial repeat outer, stimulus inner).",
        id=np.arange(n_trial * n_stimulus, dtype=np.int64),
        columns=columns,
    )


class _SpikeTimesIterator(AbstractDataChunkIterator):
    """Yields each unit's sorted spike times as one write into the ragged ``spike_times``
    dataset, so only one unit's spikes are in memory at a time (hdmf streams the iterator)."""

    def __init__(
        self, counts_by_unit: np.ndarray, starts: np.ndarray, stops: np.ndarray, seed: int
    ):
        self.counts_by_unit = counts_by_unit  # (unit, presentation)
        self.starts = starts
        self.stops = stops
        self.rng = np.random.default_rng(seed)
        self.totals = counts_by_unit.sum(axis=1, dtype=np.int64)
        self.n_total = int(self.totals.sum())
        self.unit = 0
        self.offset = 0
        self.progress = tqdm(total=len(counts_by_unit), desc="NWB units", unit="unit", disable=None)

    def unit_spike_times(self, unit: int) -> np.ndarray:
        return uniform_spike_times(self.counts_by_unit[unit], self.starts, self.stops, self.rng)

    def __iter__(self):
        return self

    def __next__(self):
        while self.unit < len(self.counts_by_unit):
            times = self.unit_spike_times(self.unit)
            self.unit += 1
            self.progress.update(1)
            if times.size:
                selection = np.s_[self.offset : self.offset + times.size]
                self.offset += times.size
                return DataChunk(data=times, selection=selection)
        self.progress.close()
        raise StopIteration

    def recommended_chunk_shape(self):
        return (max(1, min(_CHUNK_SPIKES, self.n_total)),)

    def recommended_data_shape(self):
        return (self.n_total,)

    @property
    def dtype(self):
        return np.dtype(np.float64)

    @property
    def maxshape(self):
        return (self.n_total,)


def _units_table(population: xr.Dataset, counts: np.ndarray, starts, stops, seed: int, compression):
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.common import VectorData, VectorIndex
    from pynwb.misc import Units

    n_unit = counts.shape[2]
    # (unit, presentation) in trial-major presentation order, contiguous per unit.
    counts_by_unit = np.ascontiguousarray(counts.reshape(-1, n_unit).T)
    spikes = _SpikeTimesIterator(counts_by_unit, starts, stops, seed)
    if spikes.n_total:
        options = {} if compression is None else {"compression": compression}
        if compression is not None:
            options["shuffle"] = True  # byte shuffling makes sorted float64 compress much better
        data = H5DataIO(data=spikes, **options)
    else:
        data = np.zeros(0, dtype=np.float64)
    spike_times = VectorData(
        name="spike_times", description="simulated spike times in seconds", data=data
    )
    ends = np.cumsum(spikes.totals).astype(np.int64)
    # The index goes before its target: hdmf cannot measure a column streamed from an iterator.
    columns = [
        VectorIndex(name="spike_times_index", data=ends, target=spike_times),
        spike_times,
        VectorData(
            name="unit_index",
            description="index of the latent unit in the model (0-based)",
            data=np.arange(n_unit, dtype=np.int64),
        ),
    ]
    for name in _UNIT_VARIABLES:
        if name in population and population[name].dims == ("unit",):
            values = np.asarray(population[name].values, dtype=np.float64)
            if not np.all(
                np.isnan(values)
            ):  # an all-NaN column (e.g. undefined for Poisson) says nothing
                columns.append(VectorData(name=name, description=_DESCRIPTIONS[name], data=values))
    unit_ids = np.arange(n_unit, dtype=np.int64)
    if "unit" in population.coords and population["unit"].dtype.kind in "iu":
        unit_ids = population["unit"].values.astype(np.int64)
    # Continuous-time simulation: the only quantisation of a spike time is float64 rounding,
    # whose step is largest at the end of the session.
    resolution = float(np.spacing(max(float(stops[-1]), 1.0)))
    return Units(
        name="units",
        description="Simulated neurons: one row per latent unit of the model; spike times in seconds.",
        id=unit_ids,
        columns=columns,
        resolution=resolution,
    )


#: Unit coordinates of a hierarchical population written as Units columns (docs/hierarchical.md).
_LEVEL_COORDINATES = {
    "level": "level of the hierarchical model (0 = the coarsest, first latent group)",
    "scale": "scale of the level (0 = the coarsest grid)",
    "group": "latent group within its scale",
    "channel": "latent channel within the level",
    "y": "grid row of the unit within its level",
    "x": "grid column of the unit within its level",
}


def _add_levels(nwbfile, population: xr.Dataset) -> None:
    """A hierarchical population (``level`` on ``unit``): one electrode group per level, so NWB
    tools see each level as its own area, and the unit coordinates as Units columns."""
    if "level" not in population.coords or population["level"].dims != ("unit",):
        return
    levels = np.asarray(population["level"].values).astype(np.int64)
    device = nwbfile.create_device(
        name="spikelatent_model",
        description=f"SIMULATED: the latent units of spikelatent model "
                    f"'{population.attrs.get('variant', population.attrs.get('model', 'unknown'))}'",
    )
    groups = {}
    for level in np.unique(levels):
        members = population["unit"].values[levels == level]
        where = ""
        if "scale" in population.coords:
            scale = int(population["scale"].values[levels == level][0])
            where = f", scale {scale}"
        groups[int(level)] = nwbfile.create_electrode_group(
            name=f"level{int(level)}",
            description=f"simulated latent level {int(level)}{where}: {members.size} units "
                        f"(no electrode; one group per model level)",
            location=f"model level {int(level)}{where}",
            device=device,
        )
    nwbfile.units.add_column(name="electrode_group",
                             description="the model level (area) of each unit",
                             data=[groups[int(level)] for level in levels])
    for name, description in _LEVEL_COORDINATES.items():
        if name in population.coords and population[name].dims == ("unit",):
            nwbfile.units.add_column(name=name, description=description,
                                     data=np.asarray(population[name].values).astype(np.int64))


def _add_images(nwbfile, images: np.ndarray, period: float, n_trial: int) -> None:
    from pynwb.base import ImageReferences, Images
    from pynwb.image import GrayscaleImage, IndexSeries, RGBAImage, RGBImage

    width = len(str(len(images) - 1))
    image_objects = []
    for index, image in enumerate(images):
        name = f"stimulus_{index:0{width}d}"
        description = f"stimulus {index} as fed to the model (pixel values unchanged)"
        if image.shape[0] == 1:
            image_objects.append(GrayscaleImage(name=name, data=image[0], description=description))
        elif image.shape[0] == 3:
            image_objects.append(
                RGBImage(name=name, data=np.moveaxis(image, 0, -1), description=description)
            )
        else:
            image_objects.append(
                RGBAImage(name=name, data=np.moveaxis(image, 0, -1), description=description)
            )
    stimuli = Images(
        name="stimuli",
        images=image_objects,
        description="The stimulus images, in the order of the trials table's 'stimulus' column.",
        order_of_images=ImageReferences(name="order_of_images", data=image_objects),
    )
    nwbfile.add_stimulus_template(stimuli)
    nwbfile.add_stimulus(
        IndexSeries(
            name="stimulus_presentation",
            data=np.tile(np.arange(len(images), dtype=np.uint32), n_trial),
            unit="N/A",
            indexed_images=stimuli,
            starting_time=0.0,
            rate=1.0 / period,
            description="Index of the image in 'stimuli' shown at each presentation onset.",
        )
    )


def _add_rates(nwbfile, population: xr.Dataset) -> None:
    from hdmf.common import DynamicTable, VectorData

    columns = []
    for name in _RATE_VARIABLES:
        if name in population and set(population[name].dims) == {"stimulus", "unit"}:
            values = np.asarray(
                population[name].transpose("stimulus", "unit").values, dtype=np.float64
            )
            if not np.all(np.isnan(values)):
                columns.append(
                    VectorData(
                        name=name,
                        description=_DESCRIPTIONS[name] + " (stimulus, unit)",
                        data=values,
                    )
                )
    if not columns:
        return
    n_stimulus = population.sizes["stimulus"]
    columns.insert(
        0,
        VectorData(
            name="stimulus",
            description="stimulus index (0-based), as in the trials table",
            data=np.arange(n_stimulus, dtype=np.int64),
        ),
    )
    if "label" in population.coords:
        columns.insert(
            1,
            VectorData(
                name="label",
                description="class label of the stimulus",
                data=_column_values(population["label"].transpose("stimulus")),
            ),
        )
    table = DynamicTable(
        name="posterior_parameters",
        description="Per-stimulus posterior parameters of every latent unit: one row per stimulus, "
        "each array column has one value per unit (ordered as the units table).",
        id=np.arange(n_stimulus, dtype=np.int64),
        columns=columns,
    )
    module = nwbfile.create_processing_module(
        name="latent_rates",
        description="Posterior spike-count distributions of the latent units per stimulus.",
    )
    module.add(table)
