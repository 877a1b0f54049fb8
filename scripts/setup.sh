#!/usr/bin/env bash
# Create or update the project's virtual environment in .venv (idempotent, offline-friendly).
#
#   bash scripts/setup.sh          # the app's dependencies
#   bash scripts/setup.sh --test   # plus the test tools
#
# torch is installed first, on its own: `torch==2.13.0` (override with FACE_EDITOR_TORCH="torch==X" or
# FACE_EDITOR_TORCH=skip). Every later pip call runs under a constraint that pins the torch already installed,
# so no other package can swap it for a different build (on a CPU machine that would pull several GB of
# CUDA wheels). On a GPU machine the same `pip install torch==...` picks the ordinary CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

target="."; extras="app"
[[ "${1:-}" == "--test" ]] && { target=".[test]"; extras="test"; }
py="${PYTHON:-python3}"

if [[ ! -x .venv/bin/python ]]; then
  "$py" -m venv .venv
fi
vpy=.venv/bin/python
pip=("$vpy" -m pip install --quiet --disable-pip-version-check)

if ! "$vpy" -c "import torch" 2>/dev/null; then
  spec="${FACE_EDITOR_TORCH:-torch==2.13.0}"
  if [[ "$spec" != "skip" ]]; then
    echo "setup: installing $spec" >&2
    "${pip[@]}" "$spec"
  fi
fi

torch_version=$("$vpy" -c "import torch; print(torch.__version__)")
mkdir -p .venv/face-editor
printf 'torch==%s\n' "$torch_version" > .venv/face-editor/constraints.txt
stamp=".venv/face-editor/installed-$extras"
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
  echo "setup: installing the project ($extras) with torch $torch_version pinned" >&2
  PIP_CONSTRAINT="$PWD/.venv/face-editor/constraints.txt" "${pip[@]}" -e "$target"
  touch "$stamp"
fi

# The MTCNN face detector's weights (MIT) ship inside facenet-pytorch; only its data files are read, the package is
# never imported. --no-deps: its metadata pins an old torch, torchvision and numpy that the project does not need.
if ! "$vpy" -c "import importlib.metadata as m, sys; sys.exit(m.version('facenet-pytorch') != '2.6.0')" 2>/dev/null; then
  echo "setup: installing facenet-pytorch 2.6.0 (MTCNN weights only, --no-deps)" >&2
  PIP_CONSTRAINT="$PWD/.venv/face-editor/constraints.txt" "${pip[@]}" --no-deps "facenet-pytorch==2.6.0"
fi

# The editor's own modules compiled ahead (quietly, into __pycache__): a first launch then does not spend ~0.1-0.2 s
# compiling them, and neither does any launch where Python is told not to write bytecode (PYTHONDONTWRITEBYTECODE).
"$vpy" -m compileall -q -j 0 main.py engine editor >/dev/null || echo "setup: could not precompile the sources" >&2
