import pickle
import tarfile

import numpy as np
import pytest

from tfprune.data import DataError, load_splits


def _batch(labels, label_key=b"labels", seed=0):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    return {b"data": data, label_key: list(labels)}


def write_cifar10(path, labels_per_batch=(0, 1, 2, 9), test_labels=(3, 4), corrupt_label=None,
                  protocol=None):
    members = {f"data_batch_{i}": _batch(labels_per_batch, seed=i) for i in range(1, 6)}
    test = _batch(test_labels, seed=9)
    if corrupt_label is not None:
        test[b"labels"][0] = corrupt_label
    members["test_batch"] = test
    members["batches.meta"] = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    folder = path.parent / "cifar-10-batches-py"
    folder.mkdir(exist_ok=True)
    for name, content in members.items():
        (folder / name).write_bytes(pickle.dumps(content, protocol=protocol))
    with tarfile.open(path, "w:gz") as archive:
        archive.add(folder, arcname="cifar-10-batches-py")
    return members


def test_cifar10_archive_layout_and_pixels(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    members = write_cifar10(archive)
    train, test = load_splits(str(archive))
    assert train.images.shape == (20, 32, 32, 3)
    assert train.labels.tolist()[:4] == [0, 1, 2, 9]
    assert test.labels.tolist() == [3, 4]
    assert train.class_names[0] == "c0" and train.num_classes == 10
    row = members["data_batch_1"][b"data"][1]
    # CIFAR rows are planar: 1024 red, 1024 green, 1024 blue values, row-major
    assert train.images[1, 0, 5, 0] == row[5]
    assert train.images[1, 2, 3, 1] == row[1024 + 2 * 32 + 3]
    assert train.images[1, 31, 31, 2] == row[3071]
    # the extracted folder gives the same arrays
    folder_train, _ = load_splits(str(tmp_path / "cifar-10-batches-py"))
    np.testing.assert_array_equal(folder_train.images, train.images)


def test_cifar100_archive_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(pickle.dumps(_batch([5, 99, 0], b"fine_labels")))
    (folder / "test").write_bytes(pickle.dumps(_batch([42], b"fine_labels")))
    names = [f"f{i}".encode() for i in range(100)]
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": names}))
    archive = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(folder, arcname="cifar-100-python")
    train, test = load_splits(str(archive))
    assert train.num_classes == 100 and train.labels.tolist() == [5, 99, 0]
    assert test.labels.tolist() == [42]


def test_label_outside_class_range_is_reported(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_cifar10(archive, corrupt_label=10)
    with pytest.raises(DataError, match=r"\(test\): label 10 at index 0 is outside .*0\.\.9"):
        load_splits(str(archive))


def test_not_a_cifar_archive(tmp_path):
    archive = tmp_path / "other.tar.gz"
    (tmp_path / "readme.txt").write_text("hi")
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(tmp_path / "readme.txt", arcname="readme.txt")
    with pytest.raises(DataError, match="not a CIFAR-10/100 python archive"):
        load_splits(str(archive))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_archives_of_any_pickle_protocol_load(tmp_path, protocol):
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_cifar10(archive, protocol=protocol)  # the real archives are protocol 2 (Python 2)
    train, _ = load_splits(str(archive))
    assert train.images.shape == (20, 32, 32, 3)


class _Payload:
    """Unpickling this runs os.mkdir(target): what a malicious archive would do."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        import os

        return os.mkdir, (str(self.target),)


def test_a_malicious_archive_runs_nothing(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_cifar10(archive)
    folder = tmp_path / "cifar-10-batches-py"
    target = tmp_path / "pwned"
    batch = _batch([0, 1])
    batch[b"labels"] = _Payload(target)
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch))
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    with pytest.raises(DataError, match=r"data_batch_1: not a CIFAR python batch.*posix.mkdir"):
        load_splits(str(archive))
    assert not target.exists()
