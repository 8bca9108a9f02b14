#!/usr/bin/env bash
# The one command that runs the whole test suite (README): set-up, lint, types, tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh
export PATH="$root/.tools/bin:$PATH"
.venv/bin/ruff check contract operator trainer-image sandbox tests bench
.venv/bin/mypy
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
