import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfprune.data import DataError, detect_kind, load_data


def test_cifar10_by_name_with_tfds_mock_data():
    with tfds.testing.mock_data(num_examples=40):
        data = load_data("cifar10", batch_size=8)
    assert detect_kind("cifar10") == "tfds"
    assert data.num_classes == 10 and len(data.class_names) == 10
    assert data.train_split.images.shape == (40, 32, 32, 3)
    assert data.train_split.origin == "tfds:cifar10/train"
    x, y = next(iter(data.train_dataset()))
    assert x.shape == (8, 32, 32, 3) and x.dtype == "float32"
    assert np.all((y.numpy() >= 0) & (y.numpy() < 10))


def test_unknown_name_is_neither_path_nor_tfds():
    with pytest.raises(DataError, match="'no_such_dataset' is neither an existing path nor"):
        load_data("no_such_dataset")


def test_missing_path_is_not_taken_for_a_tfds_name(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_data(str(tmp_path / "cifar-10-python.tar.gz"))
