"""Editor test fixtures: offscreen Qt (set by tests/conftest.py), a tiny saved generator, a started engine bridge,
the main window at 1280×720."""
from __future__ import annotations

import pytest
import torch

from engine.files.checkpoints import save_generator
from engine.models.stylegan2 import Generator
from engine.project import EditState, ModelRef
from tests.fakes import TINY_CFG

TINY = TINY_CFG


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A tiny random generator (32 px, num_ws 8) saved in the project's format."""
    G = Generator(TINY, seed=7).eval()
    with torch.no_grad():
        G.w_avg = G.mapping(torch.randn(256, TINY.z_dim, generator=torch.Generator().manual_seed(1)))[:, 0].mean(0)
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    save_generator(path, G)
    return path


@pytest.fixture
def tiny_state(tiny_model_path) -> EditState:
    return EditState(model=ModelRef(path=str(tiny_model_path)), seed=3, psi=0.7)


@pytest.fixture
def bridge(qtbot):
    """A started engine bridge on the CPU, shut down after the test."""
    from editor.controllers.bridge import EngineBridge

    b = EngineBridge(device="cpu").start()
    yield b
    b.shutdown()


@pytest.fixture(scope="session")
def tiny_flow_path(tmp_path_factory):
    """A tiny random StyleFlow CNF for the tiny generator (w_dim 10), fixed-step so it is quick."""
    from engine.files.flows import save_flow
    from engine.models.flow import ConditionalCNF, FlowConfig

    flow = ConditionalCNF(FlowConfig(input_dim=TINY.w_dim, hidden_dims=(16,), solver="rk4", step_size=0.25,
                                     divergence="exact", adjoint=False))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    path = tmp_path_factory.mktemp("flows") / "flow.pt"
    save_flow(path, flow.eval())
    return path


def open_main_window(qtbot, tmp_path, *, size: tuple[int, int]):
    """The main window on the embedded default model at ``size``, first frame shown; yields it, then closes it
    without asking (unsaved changes are tested in test_projects_export)."""
    from editor.controllers.bridge import EngineBridge
    from editor.controllers.document import Document
    from editor.controllers.settings import Settings
    from editor.main_window import MainWindow
    from engine.assets import ASSETS_DIR

    if not (ASSETS_DIR / "generator.pt").exists():
        pytest.fail("assets/generator.pt is missing from the checkout")
    bridge = EngineBridge(device="cpu").start()
    win = MainWindow(Document(EditState()), bridge, Settings(tmp_path / "s.ini"),
                     autosave_path=tmp_path / "autosave.fproj")
    win.resize(*size)
    win.show()
    qtbot.waitUntil(lambda: win.current_full_image() is not None and win.document.summary is not None,
                    timeout=60000)
    yield win
    win.document.undo_stack.setClean()
    assert win.close()
    bridge.shutdown()
    win.deleteLater()


@pytest.fixture
def main_window(qtbot, tmp_path):
    """The main window at 1280×720 (a small laptop screen)."""
    yield from open_main_window(qtbot, tmp_path, size=(1280, 720))
