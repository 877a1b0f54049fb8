"""The engine never imports Qt: importing every engine module with PySide6 blocked must work."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

SCRIPT = r"""
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'shiboken6', 'qtawesome', 'qtpy'):
            raise ImportError('Qt is not allowed in engine/: ' + name)
sys.meta_path.insert(0, Block())
import engine
names = [m.name for m in pkgutil.walk_packages(engine.__path__, 'engine.')]
for n in names:
    importlib.import_module(n)
qt = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'qtawesome', 'qtpy')]
assert not qt, qt
print(len(names))
"""


def test_engine_imports_without_qt():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 8  # every engine module was imported
