import numpy as np
import pytest
import tensorflow as tf

from tfprune.data import DataError, balanced_indices, class_balanced_memory, load_data
from tfprune.data.augment import pad_crop_flip
from tfprune.data.bundle import channel_statistics


def _find_window(padded, crop):
    """Returns (top, left, flipped) where crop sits in padded, or None."""
    size = crop.shape[0]
    for flipped, candidate in ((False, crop), (True, crop[:, ::-1])):
        for top in range(padded.shape[0] - size + 1):
            for left in range(padded.shape[1] - size + 1):
                if np.array_equal(padded[top:top + size, left:left + size], candidate):
                    return top, left, flipped
    return None


def test_pad_crop_flip_is_a_shifted_window_of_the_zero_padded_image():
    rng = np.random.default_rng(0)
    image = rng.integers(1, 255, size=(8, 8, 3)).astype("float32")
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    seen = set()
    for i in range(60):
        out = pad_crop_flip(tf.constant(image), tf.constant([7, i], tf.int64)).numpy()
        found = _find_window(padded, out)
        assert found is not None
        seen.add(found)
    offsets = {(top, left) for top, left, _ in seen}
    assert len(offsets) > 20 and {flip for *_, flip in seen} == {False, True}
    again = pad_crop_flip(tf.constant(image), tf.constant([7, 3], tf.int64)).numpy()
    first = pad_crop_flip(tf.constant(image), tf.constant([7, 3], tf.int64)).numpy()
    np.testing.assert_array_equal(again, first)


def test_normalization_and_test_pipeline(image_folder):
    data = load_data(str(image_folder), batch_size=4, augment=False)
    pixels = data.train_split.images.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(data.mean, pixels.mean(0), rtol=1e-5)
    batches = list(data.train_dataset())
    assert len(batches) == data.steps_per_epoch == 5
    x = np.concatenate([b[0].numpy() for b in batches])
    np.testing.assert_allclose(x.reshape(-1, 3).mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(x.reshape(-1, 3).std(0), 1, atol=1e-3)
    test_x = np.concatenate([b[0].numpy() for b in data.test_dataset()])
    expected = (data.test_split.images.astype(np.float32) - data.mean) / data.std
    np.testing.assert_allclose(test_x, expected, rtol=1e-5, atol=1e-5)


def test_epoch_stream_is_a_pure_function_of_seed_and_epoch(image_folder):
    data = load_data(str(image_folder), batch_size=5, seed=3)

    def labels_and_pixels(dataset):
        return [(x.numpy(), y.numpy()) for x, y in dataset]

    full = labels_and_pixels(data.train_dataset(0, 3))
    resumed = labels_and_pixels(data.train_dataset(1, 3))
    per_epoch = data.steps_per_epoch
    assert len(full) == 3 * per_epoch
    for (xa, ya), (xb, yb) in zip(full[per_epoch:], resumed, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    epoch0 = np.concatenate([x for x, _ in full[:per_epoch]])
    epoch1 = np.concatenate([x for x, _ in full[per_epoch:2 * per_epoch]])
    assert not np.allclose(epoch0, epoch1)
    labels0 = np.sort(np.concatenate([y for _, y in full[:per_epoch]]))
    np.testing.assert_array_equal(labels0, np.sort(data.train_split.labels))


def test_plain_train_dataset_reshuffles_each_iteration(image_folder):
    data = load_data(str(image_folder), batch_size=18)
    first = next(iter(data.train_dataset()))[1].numpy()
    dataset = data.train_dataset()
    orders = {tuple(next(iter(dataset))[1].numpy()) for _ in range(4)}
    assert len(orders) > 1
    assert sorted(first) == sorted(data.train_split.labels)


def test_balanced_subset_and_memory(image_folder):
    data = load_data(str(image_folder), train_per_class=2, test_per_class=1, seed=5)
    assert np.bincount(data.train_split.labels).tolist() == [2, 2, 2]
    assert np.bincount(data.test_split.labels).tolist() == [1, 1, 1]
    again = load_data(str(image_folder), train_per_class=2, test_per_class=1, seed=5)
    np.testing.assert_array_equal(again.train_split.images, data.train_split.images)
    images, labels = class_balanced_memory(data, samples_per_class=2, seed=1)
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.float32
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(DataError, match="class 0 has 2 examples, fewer than the 3"):
        class_balanced_memory(data, samples_per_class=3)


def test_subsets_follow_subset_seed_not_the_run_seed(image_folder):
    a = load_data(str(image_folder), train_per_class=2, test_per_class=1, seed=0)
    b = load_data(str(image_folder), train_per_class=2, test_per_class=1, seed=1)
    c = load_data(str(image_folder), train_per_class=2, test_per_class=1, subset_seed=3)
    np.testing.assert_array_equal(a.train_split.images, b.train_split.images)
    np.testing.assert_array_equal(a.test_split.images, b.test_split.images)
    assert not np.array_equal(a.train_split.images, c.train_split.images)
    first = [x.numpy() for x, _ in a.train_dataset(0, 1)]
    second = [x.numpy() for x, _ in b.train_dataset(0, 1)]
    assert not all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))


def test_balanced_indices_are_distinct_and_seeded():
    labels = np.repeat(np.arange(4), 50)
    a = balanced_indices(labels, 10, 4, seed=1)
    b = balanced_indices(labels, 10, 4, seed=1)
    c = balanced_indices(labels, 10, 4, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len(set(a.tolist())) == 40
    assert np.bincount(labels[a]).tolist() == [10, 10, 10, 10]
    with pytest.raises(DataError, match="per_class must be >= 1"):
        balanced_indices(labels, 0, 4)


def test_bad_batch_size(image_folder):
    with pytest.raises(DataError, match="batch_size must be >= 1"):
        load_data(str(image_folder), batch_size=0)


def test_a_plain_file_as_source_is_refused_clearly(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not data")
    with pytest.raises(DataError, match="notes.txt'?: a file tfprune cannot read as data"):
        load_data(str(notes))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_channel_statistics_equal_numpys_over_a_float64_copy(dtype):
    rng = np.random.default_rng(0)
    for count in (1, 7, 1500):  # 1500 spans two of the float path's slices
        images = rng.integers(0, 256, size=(count, 4, 5, 3)).astype(dtype)
        pixels = images.reshape(-1, 3).astype(np.float64)
        mean, std = channel_statistics(images)
        np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(std, pixels.std(axis=0), rtol=1e-10)
        # Normalization is unchanged in float32, to the bit (the study's runs resume on it).
        assert np.array_equal(mean.astype(np.float32), pixels.mean(axis=0).astype(np.float32))
