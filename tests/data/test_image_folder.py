import zipfile

import numpy as np
import pytest
from conftest import write_image_folder
from PIL import Image

from tfprune.data import DataError, load_splits


def test_loads_folder_with_sorted_class_labels(image_folder):
    train, test = load_splits(str(image_folder))
    assert train.class_names == ["cat", "dog", "frog"]
    assert train.images.shape == (18, 32, 32, 3) and train.images.dtype == np.uint8
    assert np.bincount(train.labels).tolist() == [6, 6, 6]
    assert np.bincount(test.labels).tolist() == [3, 3, 3]
    # write_image_folder colours class k in [60k, 60k + 60)
    for label in range(3):
        pixels = train.images[train.labels == label]
        assert pixels.min() >= 60 * label and pixels.max() < 60 * label + 60


def test_a_zip_is_decoded_once_into_the_cache(tmp_path, image_folder, monkeypatch):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in image_folder.rglob("*.png"):
            handle.write(path, "top/" + str(path.relative_to(image_folder)))
    cache = tmp_path / "my-cache"
    train, test = load_splits(str(archive), cache_dir=str(cache))
    folders = list(cache.iterdir())
    assert len(folders) == 1 and (folders[0] / "decoded-train.npz").exists()
    direct, _ = load_splits(str(image_folder))
    np.testing.assert_array_equal(train.images, direct.images)
    # the second load reads the decoded arrays, not the images
    import tfprune.data.image_folder as image_folder_module

    monkeypatch.setattr(image_folder_module, "decode_images", None)
    again, again_test = load_splits(str(archive), cache_dir=str(cache))
    np.testing.assert_array_equal(again.images, train.images)
    assert again.class_names == train.class_names and len(again_test) == len(test)


def test_missing_path_names_it(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_splits(str(tmp_path / "nowhere"))


def test_empty_class_folder_names_it(image_folder):
    empty = image_folder / "train" / "emu"
    empty.mkdir()
    with pytest.raises(DataError, match=f"{empty}: empty class folder"):
        load_splits(str(image_folder))


def test_mixed_sizes_name_the_file(image_folder):
    odd = image_folder / "train" / "dog" / "999.png"
    Image.fromarray(np.zeros((40, 32, 3), np.uint8)).save(odd)
    with pytest.raises(DataError, match=f"{odd}: image of size 32x40 differs"):
        load_splits(str(image_folder))


def test_test_split_classes_must_match(image_folder):
    (image_folder / "test" / "frog").rename(image_folder / "test" / "toad")
    with pytest.raises(DataError, match="differ from the training split"):
        load_splits(str(image_folder))


def test_missing_split_folder(tmp_path):
    write_image_folder(tmp_path / "x")
    (tmp_path / "x" / "test").rename(tmp_path / "x" / "val")
    with pytest.raises(DataError, match="expected an image folder with 'train/<class>/\\*'"):
        load_splits(str(tmp_path / "x"))
    train, test = load_splits(str(tmp_path / "x"), test_split="val")
    assert len(test) == 9
