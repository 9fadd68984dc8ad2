"""The Python examples in docs/ run and pass their own checks."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


#: Every page with a Python example.
PAGES = ["README.md", "docs/handlers.md", "docs/tensorboard.md", "docs/guides/scoring.md",
         "docs/guides/tour.md"]
SHARED = ROOT.parent / "shared"


def test_every_page_with_python_is_listed():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    with_python = {str(page.relative_to(ROOT)) for page in pages if python_blocks(page)}
    assert with_python == set(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_examples_run(page, tmp_path, monkeypatch):
    blocks = python_blocks(ROOT / page)
    assert blocks, f"{page} has no Python example"
    if any("../shared/" in block for block in blocks) and not SHARED.is_dir():
        pytest.skip(f"{page} reads ../shared/datasets, which is not beside the repository")
    (tmp_path / "work").mkdir()
    if SHARED.is_dir():  # examples name the data as ../shared/..., from the repository root
        (tmp_path / "shared").symlink_to(SHARED)
    monkeypatch.chdir(tmp_path / "work")  # examples write under runs/
    namespace = {"__name__": "docs_example"}  # a page's blocks run in one session, in order
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)
