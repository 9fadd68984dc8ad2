"""The Python examples in docs/ run and pass their own checks."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


#: The pages whose Python examples run here (the others train for minutes on real data).
PAGES = ["README.md", "docs/handlers.md", "docs/tensorboard.md", "docs/guides/scoring.md"]


@pytest.mark.parametrize("page", PAGES)
def test_examples_run(page, tmp_path, monkeypatch):
    blocks = python_blocks(ROOT / page)
    assert blocks, f"{page} has no Python example"
    monkeypatch.chdir(tmp_path)  # examples write under runs/
    namespace = {"__name__": "docs_example"}  # a page's blocks run in one session, in order
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)
