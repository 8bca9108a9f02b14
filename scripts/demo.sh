#!/usr/bin/env bash
# The main job on a fresh machine, no cluster needed: set-up, then the sandbox demo.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh
export PATH="$root/.tools/bin:$root/.venv/bin:$PATH"
exec .venv/bin/clm-sandbox demo "$@"
