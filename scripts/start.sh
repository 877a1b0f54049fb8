#!/usr/bin/env bash
# Install what is missing into .venv, then start the editor on the embedded default model (arguments pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python main.py "$@"
