"""The Python examples in docs/ run and pass their own checks."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


#: Every page with a Python example.
PAGES = ["README.md", "docs/handlers.md", "docs/tensorboard.md", "docs/guides/models.md",
         "docs/guides/scoring.md", "docs/guides/tour.md", "docs/guides/keras-hub.md",
         "docs/guides/distributed.md", "docs/guides/language-models.md"]
SHARED = ROOT.parent / "shared"


def test_every_page_with_python_is_listed():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    with_python = {str(page.relative_to(ROOT)) for page in pages if python_blocks(page)}
    assert with_python == set(PAGES)


#: Pages whose examples train for a minute or more: each runs from its own test module
#: (tests/test_docs_readme.py, tests/test_docs_tour.py), so the two xdist workers share them.
LONG_PAGES = ("README.md", "docs/guides/tour.md")


@pytest.mark.parametrize("page", [page for page in PAGES if page not in LONG_PAGES])
def test_examples_run(page, tmp_path, monkeypatch):
    run_page(page, tmp_path, monkeypatch)


def run_page(page: str, tmp_path, monkeypatch) -> None:
    """Runs a page's Python blocks in order, in one namespace, from a scratch folder."""
    blocks = python_blocks(ROOT / page)
    assert blocks, f"{page} has no Python example"
    reads_shared = any("../shared/" in block for block in blocks)
    if reads_shared and not SHARED.is_dir():
        pytest.skip(f"{page} reads ../shared/datasets, which is not beside the repository")
    if reads_shared:  # the shared CIFAR-10 copy is extracted and decoded once per machine
        monkeypatch.delenv("TFPRUNE_CACHE_DIR")
    (tmp_path / "work").mkdir()
    if SHARED.is_dir():  # examples name the data as ../shared/..., from the repository root
        (tmp_path / "shared").symlink_to(SHARED)
    monkeypatch.chdir(tmp_path / "work")  # examples write under runs/
    namespace = {"__name__": "docs_example"}  # a page's blocks run in one session, in order
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)
