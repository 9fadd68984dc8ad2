"""Resource limits on data: zip bombs, paths out of the archive, huge images, a full disk."""

import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from conftest import write_image_folder
from PIL import Image

from tfprune.data import DataError
from tfprune.data.image_folder import decode_images, load_image_folder


def test_a_zip_bomb_is_refused_before_anything_is_read(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train/a/zeros.png", bytes(100 * 2**20))  # 100 MiB of zeros
    assert bomb.stat().st_size < 2**20
    with pytest.raises(DataError, match=r"bomb.zip: would extract to 100 MiB from 0.1 MiB .*"
                                        r"refused as a possible zip bomb"):
        load_image_folder(bomb, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.*"))


def test_the_size_limit_is_configurable(tmp_path, monkeypatch):
    archive_path = tmp_path / "data.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("train/a/x.bin", os.urandom(4096))
    monkeypatch.setenv("TFPRUNE_MAX_EXTRACT_BYTES", "1000")
    with pytest.raises(DataError, match=r"limit 0 MiB.*raise \$TFPRUNE_MAX_EXTRACT_BYTES"):
        load_image_folder(archive_path, cache_dir=tmp_path / "cache")
    monkeypatch.setenv("TFPRUNE_MAX_EXTRACT_BYTES", "5000")  # past the check: no test split
    with pytest.raises(DataError, match=r"expected an image folder with 'train/<class>/\*'"):
        load_image_folder(archive_path, cache_dir=tmp_path / "cache")


def _zipped(folder, archive_path, prefix="", extra=()):
    with zipfile.ZipFile(archive_path, "w") as archive:
        for path in sorted(folder.rglob("*.png")):
            archive.write(path, prefix + str(path.relative_to(folder)))
        for name, data in extra:
            archive.writestr(name, data)
    return archive_path


def test_a_zip_is_read_in_place_and_a_member_leaving_it_is_never_written(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    archive_path = _zipped(folder, tmp_path / "evil.zip", extra=[("../../escaped.txt", "x")])
    train, test = load_image_folder(archive_path, cache_dir=tmp_path / "a" / "b")
    assert len(train) == 18 and len(test) == 9
    assert not list(tmp_path.rglob("escaped.txt"))
    cached = sorted(p.name for p in (tmp_path / "a" / "b").rglob("*") if p.is_file())
    assert cached == ["decoded-test.npz", "decoded-train.npz"]  # nothing extracted


def test_a_huge_image_is_refused_from_its_header(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "images", size=(64, 48))
    paths = sorted((root / "train" / "cat").glob("*.png"))
    monkeypatch.setenv("TFPRUNE_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(DataError, match=r"000.png: image of 48x64 pixels, more than the limit "
                                        r"of 1,000 \(\$TFPRUNE_MAX_IMAGE_PIXELS\); not decoded"):
        decode_images(paths)
    monkeypatch.delenv("TFPRUNE_MAX_IMAGE_PIXELS")
    assert decode_images(paths).shape == (6, 64, 48, 3)
    # Pillow's own bomb check (a header claiming far more pixels) is named, not raised raw.
    monkeypatch.setenv("TFPRUNE_MAX_IMAGE_PIXELS", str(10**12))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match=r"000.png: cannot decode image \(Image size"):
        decode_images(paths)


def test_mixed_sizes_are_refused_before_decoding_the_odd_image(tmp_path):
    root = write_image_folder(tmp_path / "images")
    odd = root / "train" / "cat" / "999.png"
    Image.fromarray(np.zeros((40, 32, 3), np.uint8)).save(odd)
    with pytest.raises(DataError, match=r"999.png: image of size 32x40 differs"):
        decode_images(sorted((root / "train" / "cat").glob("*.png")))


def test_a_full_disk_leaves_the_data_loaded_uncached_and_no_partial_file(tmp_path):
    folder = write_image_folder(tmp_path / "images", per_class=(60, 3))
    archive_path = _zipped(folder, tmp_path / "data.zip")
    cache = tmp_path / "cache"
    # A file-size limit stands in for a full disk (it fails writes with EFBIG).
    script = textwrap.dedent(f"""
        import resource, signal, warnings
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**16, 2**16))
        from tfprune.data.image_folder import load_image_folder
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train, _ = load_image_folder({str(archive_path)!r}, cache_dir={str(cache)!r})
        print("@@", len(train), *[str(w.message) for w in caught])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert "@@ 180 " in result.stdout, result.stderr[-2000:]
    assert "no space left on the device for the decoded images" in result.stdout
    assert "the next load decodes the zip again" in result.stdout
    # the small test split (27 KB) fits under the limit; the training split left nothing
    assert [p.name for p in cache.rglob("*") if p.is_file()] == ["decoded-test.npz"]


def test_the_cache_follows_the_zips_contents_not_its_place_or_time(tmp_path, monkeypatch):
    """A copy, or the same zip mounted again with a new time, is not decoded again."""
    folder = write_image_folder(tmp_path / "images")
    archive_path = _zipped(folder, tmp_path / "data.zip")
    cache = tmp_path / "cache"
    first, _ = load_image_folder(archive_path, cache_dir=cache)
    copy = tmp_path / "elsewhere" / "data.zip"
    copy.parent.mkdir()
    copy.write_bytes(archive_path.read_bytes())
    os.utime(copy, (1, 1))
    import tfprune.data.image_folder as image_folder

    def no_decoding(paths):
        raise AssertionError("decoded again")

    with monkeypatch.context() as patch:
        patch.setattr(image_folder, "decode_images", no_decoding)
        again, _ = load_image_folder(copy, cache_dir=cache)
    np.testing.assert_array_equal(again.images, first.images)
    assert len(list(cache.iterdir())) == 1
    _zipped(folder, copy, extra=[("train/cat/zzz.png", (folder / "train/cat/000.png")
                                  .read_bytes())])  # one image more: a new cache folder
    changed, _ = load_image_folder(copy, cache_dir=cache)
    assert len(changed) == len(first) + 1 and len(list(cache.iterdir())) == 2


def test_a_file_that_is_not_a_zip_is_named(tmp_path):
    broken = tmp_path / "data.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"data.zip: not a readable zip file"):
        load_image_folder(broken, cache_dir=tmp_path / "cache")


def test_an_unreadable_cache_file_is_decoded_again_and_replaced(tmp_path):
    folder = write_image_folder(tmp_path / "images")
    archive_path = _zipped(folder, tmp_path / "data.zip")
    cache = tmp_path / "cache"
    first, _ = load_image_folder(archive_path, cache_dir=cache)
    (cached,) = cache.rglob("decoded-train.npz")
    cached.write_bytes(cached.read_bytes()[:100])  # truncated, as a crash elsewhere could
    with pytest.warns(UserWarning, match="decoded-train.npz: not a readable cache"):
        again, _ = load_image_folder(archive_path, cache_dir=cache)
    np.testing.assert_array_equal(again.images, first.images)
    np.savez(cached, images=np.zeros(3))  # an npz of something else
    with pytest.warns(UserWarning, match="not a readable cache"):
        again, _ = load_image_folder(archive_path, cache_dir=cache)
    np.testing.assert_array_equal(again.images, first.images)
    third, _ = load_image_folder(archive_path, cache_dir=cache)  # replaced: read, no warning
    np.testing.assert_array_equal(third.images, first.images)
