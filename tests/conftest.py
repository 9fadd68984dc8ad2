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


#: The longest modules, longest first (seconds of all their tests on 2 idle cores, one TF
#: thread per worker, 2026-12-05, session 19's durations): collected first and in this
#: order, which scripts/test.sh keeps (``--no-loadscope-reorder``). xdist (``--dist loadfile``)
#: hands a worker its next module while the one it runs has a test or two left, so a long
#: module met late can queue behind another long one while the other worker idles;
#: longest-first leaves the short modules for the end, where they even out the workers.
LONG_MODULES = ("test_multi_worker.py",  # 80, two clusters of two processes
                "test_real_cifar10.py",  # 55, and the shared data's first decoding (12)
                "test_grid.py",  # 70, with two grid processes
                "test_measured_budget.py",  # 71
                "test_run_safety.py",  # 64
                "test_keras_hub_models.py",  # 63
                "test_strategies.py",  # 50, one subprocess
                "test_golden.py",  # 52
                "test_deploy_commands.py",  # 52
                "test_finetune.py",  # 51
                "test_model_zoo.py",  # 50
                "test_docs_tour.py",  # 49
                "test_slim.py",  # 45
                "test_distributed_tune.py",  # 33
                "test_budget.py",  # 32
                "test_tflite.py",  # 32
                "test_dynamics.py",  # 30
                "test_cli.py",  # 29
                "test_docs_readme.py",  # 25
                "test_prune_run.py")  # 24


def pytest_collection_modifyitems(config, items):
    rank = {name: index for index, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_MODULES)))  # stable
