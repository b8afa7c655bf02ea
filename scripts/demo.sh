#!/usr/bin/env bash
# Set up the environment, then run the demo: the emulator serving the demo workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/polysync emulator serve --workspace demo --port "${POLYSYNC_DEMO_PORT:-8765}" "$@"
