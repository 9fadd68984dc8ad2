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


#: The longest modules, longest first (seconds each on 2 idle cores, one TF thread per worker,
#: 2026-12-05): collected first and in this order, which scripts/test.sh keeps
#: (``--no-loadscope-reorder``). xdist (``--dist loadfile``) hands a worker its next module
#: while the one it runs has a test or two left, so a long module met late can queue behind
#: another long one while the other worker idles; longest-first leaves the short modules for
#: the end, where they even out the two workers.
LONG_MODULES = ("test_multi_worker.py",  # 67, two clusters of two processes
                "test_real_cifar10.py",  # 70
                "test_run_safety.py",  # 59
                "test_grid.py",  # 43
                "test_strategies.py",  # 41 + 30, one subprocess now
                "test_prune_run.py",  # 40
                "test_distributed_tune.py",  # 39
                "test_docs_readme.py",  # 39
                "test_measured_budget.py",  # 38
                "test_docs_tour.py",  # 37
                "test_finetune.py",  # 36
                "test_deploy_commands.py",  # 32
                "test_keras_hub_models.py",  # 31
                "test_cli.py",  # 30
                "test_golden.py",  # 27
                "test_slim.py",  # 27
                "test_budget.py",  # 26
                "test_model_zoo.py")  # 25


def pytest_collection_modifyitems(config, items):
    rank = {name: index for index, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_MODULES)))  # stable
