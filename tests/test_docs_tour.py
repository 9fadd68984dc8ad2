"""The tour example (docs/guides/tour.md) runs and passes its own checks."""

from test_docs_examples import run_page


def test_the_tour_example_runs(tmp_path, monkeypatch):
    run_page("docs/guides/tour.md", tmp_path, monkeypatch)
