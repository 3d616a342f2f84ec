"""Image datasets as Lightning DataModules with the paper's preprocessing (App. B.2.1).

>>> from spikelatent.data import make_datamodule
>>> data = make_datamodule("digits", batch_size=64)
>>> images, labels = data.split_tensors("train")
>>> tuple(images.shape[1:]), data.data_range
((1, 28, 28), (0.0, 1.0))

See ``docs/data.md`` for the datasets, their files and where they are looked for.
"""

from spikelatent.data.base import MAX_LISTED_INDICES, ImageDataModule, ImageTensorDataset
from spikelatent.data.builtin import (
    CelebA64DataModule,
    CIFAR16DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    SyntheticDataModule,
    celeba64_transform,
    cifar16_transform,
)
from spikelatent.data.locate import (
    DATA_ENV_VAR,
    FILE_LAYOUTS,
    SYSTEM_DIRS,
    cache_data_dir,
    candidate_folders,
    data_roots,
)
from spikelatent.data.registry import (
    DATASETS,
    datamodule_from_config,
    find_dataset_root,
    make_datamodule,
    resolve_name,
)
from spikelatent.data.splits import SPLITS, TEST_SPLIT_SEED

__all__ = [
    "DATASETS",
    "DATA_ENV_VAR",
    "FILE_LAYOUTS",
    "MAX_LISTED_INDICES",
    "SPLITS",
    "SYSTEM_DIRS",
    "TEST_SPLIT_SEED",
    "CIFAR16DataModule",
    "CelebA64DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageTensorDataset",
    "MNISTDataModule",
    "SyntheticDataModule",
    "cache_data_dir",
    "candidate_folders",
    "celeba64_transform",
    "cifar16_transform",
    "data_roots",
    "find_dataset_root",
    "datamodule_from_config",
    "make_datamodule",
    "resolve_name",
]
