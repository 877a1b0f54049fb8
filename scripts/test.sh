#!/usr/bin/env bash
# Install what is missing into .venv (with the test tools), lint, check the import layering (pyproject's
# [tool.importlinter] contracts), then run the whole test suite (arguments pass to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check --quiet . || { echo "test.sh: lint failed (ruff check .)" >&2; exit 1; }
layering=$(.venv/bin/lint-imports --no-cache 2>&1) || { echo "$layering"; echo "test.sh: the import layering is broken (lint-imports)" >&2; exit 1; }
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when it collected no tests: that is not a failure of the code, but say so loudly.
if [[ $rc -eq 5 ]]; then
  echo "test.sh: pytest collected no tests" >&2
  exit 0
fi
exit $rc
