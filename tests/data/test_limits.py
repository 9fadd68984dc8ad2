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
from tfprune.data.cache import cache_folder_for
from tfprune.data.image_folder import decode_images, extract_zip_once


def test_a_zip_bomb_is_refused_before_anything_is_extracted(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train/a/zeros.png", bytes(100 * 2**20))  # 100 MiB of zeros
    assert bomb.stat().st_size < 2**20
    with pytest.raises(DataError, match=r"bomb.zip: would extract to 100 MiB from 0.1 MiB .*"
                                        r"refused as a possible zip bomb"):
        extract_zip_once(bomb, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.png"))


def test_the_size_limit_is_configurable(tmp_path, monkeypatch):
    archive_path = tmp_path / "data.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("train/a/x.bin", os.urandom(4096))
    monkeypatch.setenv("TFPRUNE_MAX_EXTRACT_BYTES", "1000")
    with pytest.raises(DataError, match=r"limit 0 MiB.*raise \$TFPRUNE_MAX_EXTRACT_BYTES"):
        extract_zip_once(archive_path, tmp_path / "cache")
    monkeypatch.setenv("TFPRUNE_MAX_EXTRACT_BYTES", "5000")
    assert (extract_zip_once(archive_path, tmp_path / "cache") / "train/a/x.bin").is_file()


def test_a_member_leaving_the_folder_is_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../../escaped.txt", "x")
    with pytest.raises(DataError, match=r"'../../escaped.txt' would be written outside"):
        extract_zip_once(evil, tmp_path / "a" / "b")
    assert not list(tmp_path.rglob("escaped.txt"))


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


def test_a_full_disk_while_extracting_is_one_clear_error_and_leaves_nothing(tmp_path):
    archive_path = tmp_path / "data.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        for i in range(4):
            archive.writestr(f"train/a/{i}.bin", os.urandom(2**20))
    cache = tmp_path / "cache"
    # A file-size limit stands in for a full disk (it fails writes with EFBIG).
    script = textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**19, 2**19))
        from tfprune.data import DataError
        from tfprune.data.image_folder import extract_zip_once
        try:
            extract_zip_once(__import__("pathlib").Path({str(archive_path)!r}), {str(cache)!r})
        except DataError as error:
            print(error)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert "no space left on the device while extracting it" in result.stdout, result.stderr
    assert "the partial extraction was removed" in result.stdout
    assert not [p for p in cache.rglob("*") if p.is_file()]


def test_extraction_goes_through_a_private_folder_and_replaces_an_unfinished_one(tmp_path):
    archive_path = tmp_path / "data.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("train/a/x.bin", b"12345")
    cache = tmp_path / "cache"
    target = cache_folder_for(archive_path, cache)
    target.mkdir(parents=True)
    (target / "half-written.bin").write_bytes(b"1")  # a crashed extraction: no marker
    folder = extract_zip_once(archive_path, cache)
    assert folder == target
    assert (folder / "train/a/x.bin").read_bytes() == b"12345"
    assert not (folder / "half-written.bin").exists()
    assert [p.name for p in cache.iterdir()] == [target.name]  # no private folder left


def test_the_cache_follows_the_zips_contents_not_its_place_or_time(tmp_path):
    """A copy, or the same zip mounted again with a new time, is not extracted again."""
    archive_path = tmp_path / "data.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("train/a/x.bin", b"12345")
    cache = tmp_path / "cache"
    folder = extract_zip_once(archive_path, cache)
    (folder / "train/a/x.bin").write_bytes(b"seen")  # tells a reuse from a new extraction
    copy = tmp_path / "elsewhere" / "data.zip"
    copy.parent.mkdir()
    copy.write_bytes(archive_path.read_bytes())
    os.utime(copy, (1, 1))
    assert extract_zip_once(copy, cache) == folder
    assert (folder / "train/a/x.bin").read_bytes() == b"seen"
    with zipfile.ZipFile(copy, "w") as archive:  # one byte changed: a new extraction
        archive.writestr("train/a/x.bin", b"12346")
    changed = extract_zip_once(copy, cache)
    assert changed != folder and (changed / "train/a/x.bin").read_bytes() == b"12346"


def test_a_file_that_is_not_a_zip_is_named(tmp_path):
    broken = tmp_path / "data.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"data.zip: not a readable zip file"):
        extract_zip_once(broken, tmp_path / "cache")
