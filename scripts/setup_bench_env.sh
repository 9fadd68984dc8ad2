#!/usr/bin/env bash
# Creates .venv-bench: PyTorch (CPU) and NumPy for the PyTorch twin of the scoring benchmark
# (python scripts/bench_importance.py --parts torch). PyTorch is not a dependency of tfprune.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv-bench/bin/python ]; then
  "$PYTHON" -m venv .venv-bench
fi
# 2.13.0: the CPU build (a newer or unpinned torch pulls a CUDA build of several GB).
.venv-bench/bin/python -m pip install --quiet "torch==2.13.0" numpy
