"""Editor latency on the embedded default model: slider moved -> new pixels painted, and launch -> first face.

Runs the real main window offscreen with the real engine worker. Three figures, median and p95 in ms:

* ``step``: move the ψ slider, wait until the canvas has painted the new frame, repeat (one edit at a time);
* ``drag``: move the slider at 60 Hz for a few seconds as a hand does (throttled requests, preview frames); each
  painted frame is timed from the input event it reflects;
* ``sliders``: the same step and drag figures for ψ, the age slider (measured directions), age with gender locked,
  the first lighting preset and the truncation cutoff; ``settled`` is the time to the settled frame that follows a
  quick attribute solve (locks held); ``drag_engine`` the engine's own time for the frames painted during the drag;
* ``engine``: the render job alone on the worker's device, the baseline the GUI overhead is measured against.

And ``launch``: a fresh ``python main.py --screenshot`` process, from its start to the first face on the canvas.

    python benchmarks/editor_latency.py [--moves 60] [--drag-seconds 3] [--launches 3] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def summary(values: list[float]) -> dict:
    v = sorted(values)
    return {"n": len(v), "median_ms": round(statistics.median(v), 2),
            "p95_ms": round(v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))], 2)}


def measure_gui(*, moves: int, drag_seconds: float, threads: int | None) -> dict:
    from PySide6.QtWidgets import QApplication

    from editor.controllers.bridge import EngineBridge, gui_cpu_threads
    from editor.controllers.document import Document
    from editor.controllers.settings import Settings
    from editor.main_window import MainWindow
    from engine.jobs.render import cached_model, render_state
    from engine.project import EditState
    from engine.runtime import tune_allocator

    tune_allocator()
    app = QApplication.instance() or QApplication([])
    tmp = Path(tempfile.mkdtemp())
    bridge = EngineBridge(device="cpu", cpu_threads=threads or gui_cpu_threads()).start()
    window = MainWindow(Document(EditState()), bridge, Settings(tmp / "s.ini"), autosave_path=tmp / "autosave.fproj")
    window.resize(1280, 800)
    window.show()
    painted: dict = {}  # state -> when its first frame was painted
    settled: dict = {}  # state -> when its settled frame was painted (quick attribute solves are followed by one)
    engine_ms: dict = {}  # state -> the engine's time for its first painted frame

    def on_frame(result):
        window.canvas.repaint()  # paint now, synchronously: the pixels are on the canvas when this returns
        now = time.perf_counter()
        painted.setdefault(result.state, now)
        engine_ms.setdefault(result.state, result.ms)
        if not result.live:
            settled.setdefault(result.state, now)

    window.preview.frame.connect(on_frame)

    def wait(pred, timeout=30.0):
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end:
                raise TimeoutError("no frame arrived")
            app.processEvents()
            time.sleep(0.0005)

    def measure_slider(slider, values, drag_values) -> dict:
        """Step: set each value, wait for its first pixels (and its settled frame); drag: 60 Hz inputs."""
        step, settle = [], []
        painted.clear()
        settled.clear()
        engine_ms.clear()
        for v in values:
            if abs(v - slider.value()) < 1e-9:
                continue
            t0 = time.perf_counter()
            slider.setValue(v)
            st = window.document.state
            wait(lambda: st in settled)
            step.append((painted[st] - t0) * 1e3)
            settle.append((settled[st] - t0) * 1e3)
        inputs: dict = {}
        painted.clear()
        settled.clear()
        engine_ms.clear()
        slider.sliderPressed.emit()
        t_end = time.perf_counter() + drag_seconds
        k = 0
        while time.perf_counter() < t_end:
            slider.setValue(drag_values[k % len(drag_values)])
            k += 1
            inputs.setdefault(window.document.state, time.perf_counter())
            frame_end = time.perf_counter() + 1 / 60
            while time.perf_counter() < frame_end:
                app.processEvents()
                time.sleep(0.0005)
        slider.sliderReleased.emit()
        final = window.document.state
        wait(lambda: final in settled)
        drag = [(t - inputs[st]) * 1e3 for st, t in painted.items() if st in inputs]
        drag_engine = [engine_ms[st] for st in painted if st in inputs]
        return {"step": summary(step), "settled": summary(settle), "drag": summary(drag) | {"frames": len(drag),
                                                                                         "inputs": k},
                "drag_engine": summary(drag_engine)}

    wait(lambda: window.current_full_image() is not None)
    ramp = [round(0.3 + 0.6 * ((i * 7) % moves) / moves, 2) for i in range(moves)]
    drag_psi = [round(0.2 + 0.002 * k, 3) for k in range(400)]
    sliders = {"psi": measure_slider(window.generation_panel.psi, ramp, drag_psi)}
    step, drag = sliders["psi"]["step"], sliders["psi"]["drag"]
    panel = window.attributes_panel
    wait(lambda: panel.sliders["age"].isEnabled())
    ages = [30.0 + 30.0 * ((i * 7) % moves) / moves for i in range(moves // 3)]
    drag_ages = [30.0 + 0.05 * k for k in range(600)]
    sliders["age"] = measure_slider(panel.sliders["age"], ages, drag_ages)
    panel.locks["gender"].click()
    wait(lambda: panel.sliders["age"].isEnabled() and "gender" in window.document.state.locks)
    sliders["age, gender locked"] = measure_slider(panel.sliders["age"], ages[::-1], drag_ages[::-1])
    panel.locks["gender"].click()
    light = [round(((i * 7) % moves) / moves, 2) for i in range(moves // 3)]
    sliders["lighting"] = measure_slider(panel.lights[0], light, [round(0.002 * k, 3) for k in range(400)])
    panel.reset_all.click()
    window.generation_panel.cutoff.setValue(0)
    sliders["cutoff"] = measure_slider(window.generation_panel.cutoff, [2, 6, 4, 8, 3, 7, 5, 9],
                                       list(range(1, 10)))
    step = {"median_ms": step["median_ms"], "p95_ms": step["p95_ms"], "n": step["n"]}

    class Ctx:
        device = bridge._worker.device
        models = bridge._worker.models

    G = cached_model(Ctx, window.document.state.model)
    engine = []
    for i in range(moves):
        st = window.document.state.replace(psi=0.3 + 0.01 * i)
        t0 = time.perf_counter()
        render_state(G, st)
        engine.append((time.perf_counter() - t0) * 1e3)
    window.document.undo_stack.setClean()  # nothing to save: closing must not ask
    window.close()
    bridge.shutdown()
    import torch

    return {"threads": torch.get_num_threads(), "step": step, "drag": drag, "sliders": sliders,
            "engine": summary(engine), "resolution": window.document.summary.resolution}


def measure_launch(runs: int) -> dict:
    """``runs`` launches after an untimed first one (the OS file cache then holds the libraries, as for any launch
    but a machine's first), with the sources compiled as ``scripts/setup.sh`` leaves them; the first's time is
    ``first_ms``."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "main.py", "engine", "editor"], cwd=ROOT, check=True,
                   capture_output=True)
    times = []
    for _ in range(runs + 1):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            out = subprocess.run([sys.executable, str(ROOT / "main.py"), "--screenshot", f"{tmp}/s.png",
                                  "--settings", f"{tmp}/s.ini"], capture_output=True, text=True, timeout=300)
            line = next((ln for ln in out.stderr.splitlines() if ln.startswith("first frame at epoch")), None)
            if line is None:
                raise RuntimeError(f"the editor did not report a first frame:\n{out.stderr}")
            times.append((float(line.split()[-1]) - t0) * 1e3)
    return summary(times[1:]) | {"first_ms": round(times[0], 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--moves", type=int, default=60)
    ap.add_argument("--drag-seconds", type=float, default=3.0)
    ap.add_argument("--launches", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="engine threads (default: as the editor: cores - 1)")
    args = ap.parse_args()
    result = {"launch": measure_launch(args.launches)}
    result |= measure_gui(moves=args.moves, drag_seconds=args.drag_seconds, threads=args.threads)
    s, e = result["step"]["median_ms"], result["engine"]["median_ms"]
    result["step_over_engine"] = round(s / e, 2)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
