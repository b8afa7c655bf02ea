#!/usr/bin/env bash
# Set up the environment, then run every check: ruff (lint + format), mypy --strict, pytest.
# pytest runs on one worker per core (pytest-xdist; each test module stays on one worker, so its
# module-scoped servers start once): POLYSYNC_TEST_WORKERS=0 runs it in this process instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/mypy
.venv/bin/pytest -n "${POLYSYNC_TEST_WORKERS:-auto}" --dist loadfile "$@"
