"""The README example runs and passes its own checks."""

from test_docs_examples import run_page


def test_the_readme_example_runs(tmp_path, monkeypatch):
    run_page("README.md", tmp_path, monkeypatch)
