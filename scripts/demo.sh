#!/usr/bin/env bash
# Set up the environment, then run the demo: `polysync demo` starts the emulated demo workspace in
# process and drives it end to end (platform, discovery, import, a success, a failure, a cancel).
# Extra arguments go to `polysync demo` (e.g. --serve keeps the emulator up afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/polysync demo "$@"
# Alternative: serve the demo workspace on its own (http://localhost:8765), to drive it yourself:
#   exec .venv/bin/polysync emulator serve --workspace demo --port "${POLYSYNC_DEMO_PORT:-8765}"
