import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

SHARED_CIFAR10_ZIP = Path(__file__).resolve().parents[1].parent / "shared/datasets/cifar10-jpeg.zip"


def write_image_folder(root: Path, classes=("cat", "dog", "frog"), per_class=(6, 3),
                       size=(32, 32), seed=0) -> Path:
    """Writes root/train/<class>/*.png and root/test/<class>/*.png with class-dependent colours."""
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "test"), per_class, strict=True):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 60, size=(*size, 3)) + 60 * label
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:03d}.png")
    return root


def masked_copy(model, plan):
    """A copy of ``model`` with ``plan``'s removed channels zeroed: what ``slim`` must equal."""
    import keras

    import tfprune

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return tfprune.apply_plan(copy, plan)


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "images")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Zip extraction goes to a per-test cache unless a test uses the shared one."""
    monkeypatch.setenv("TFPRUNE_CACHE_DIR", str(tmp_path / "cache"))


#: Modules of about a minute each (real data, the tour, the README): collected first, so the
#: two xdist workers (``--dist loadfile``) start them at once and end together, rather than
#: meeting them last, when one worker would run them while the other idles.
LONG_MODULES = ("test_real_cifar10.py", "test_docs_tour.py", "test_docs_readme.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.path.name not in LONG_MODULES)  # stable: the rest in order
