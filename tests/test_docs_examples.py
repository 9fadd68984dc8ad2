"""The Python examples in docs/ run and pass their own checks."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("page", ["handlers.md", "tensorboard.md"])
def test_examples_run(page):
    blocks = python_blocks(DOCS / page)
    assert blocks, f"{page} has no Python example"
    for block in blocks:
        exec(compile(block, f"docs/{page}", "exec"), {"__name__": "docs_example"})
