"""Provenance: the code's commit is named only when the running code is the checkout's own."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _commit_seen_from(package_parent: Path) -> str:
    # The module alone (standard library only), loaded from that copy's file: importing the
    # package would start TensorFlow, 4 s per process for nothing this test looks at.
    script = textwrap.dedent("""
        import importlib.util
        spec = importlib.util.spec_from_file_location("provenance", "tfprune/provenance.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(module.code_commit())
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=package_parent, env={"PYTHONPATH": str(package_parent),
                                                   "PATH": "/usr/bin:/bin"},
                          timeout=120).stdout.strip().splitlines()[-1]


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")
def test_an_extracted_copy_inside_the_repository_names_no_commit(tmp_path):
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert _commit_seen_from(ROOT) == head
    # the study's pinned copies live in runs/ (ignored): the repository's HEAD is not theirs
    copy = ROOT / "runs" / "provenance-test-copy"
    subprocess.run(["rm", "-rf", str(copy)], check=True)
    copy.mkdir(parents=True)
    shutil.copytree(ROOT / "tfprune", copy / "tfprune",
                    ignore=shutil.ignore_patterns("__pycache__"))
    try:
        assert _commit_seen_from(copy) == "None"
    finally:
        subprocess.run(["rm", "-rf", str(copy)], check=True)
