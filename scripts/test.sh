#!/usr/bin/env bash
# The whole test suite on a fresh machine: install (with test extras), lint (ruff, and the
# layering with import-linter's lint-imports: contracts in setup.cfg), build the docs
# with the API reference (mkdocs --strict: a broken link or docstring fails), then pytest
# (extra arguments go to pytest, e.g. tests/data -q; -n 0 runs in one process).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup_env.sh test
.venv/bin/ruff check tfprune tests scripts
.venv/bin/lint-imports --no-cache
.venv/bin/mkdocs build --strict --quiet --site-dir "${TMPDIR:-/tmp}/tfprune-site"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# One TensorFlow thread per process: the workers below fill the 2 cores between them, and
# threads of several processes fighting for the same cores cost more than they gain (2026-12-05:
# 8 min 40 s this way, against 8 min 58 s with TensorFlow's default thread pools).
export TF_NUM_INTRAOP_THREADS=${TF_NUM_INTRAOP_THREADS:-1}
export TF_NUM_INTEROP_THREADS=${TF_NUM_INTEROP_THREADS:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# Three workers on 2 cores, one test module each at a time (module fixtures stay per worker),
# handed out in collection order: tests/conftest.py puts the longest modules first. A third
# worker fills the time the others spend waiting (on the subprocesses of the multi-worker,
# grid and tuning tests, on files): 8 min 8 s against 8 min 21 s with two (2026-12-05).
# xdist's default would reorder modules by their number of tests, leaving the long one-test
# modules (real data, the README, the tour) for the end, run one after another by one worker.
.venv/bin/python -m pytest -n 3 --dist loadfile --no-loadscope-reorder "$@"
