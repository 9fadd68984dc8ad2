#!/usr/bin/env bash
# The whole test suite on a fresh machine: install (with test extras), lint, then pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup_env.sh test
.venv/bin/ruff check tfprune tests scripts
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
.venv/bin/python -m pytest "$@"
