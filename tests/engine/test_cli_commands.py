"""The headless commands edit, render, translate and attributes: what they write is what the editor's jobs make
for the same state (bit for bit), on the embedded default and on a tiny loaded model; one argument style (help
with examples, one ``error:`` line and exit 2 for bad input, -q silent, -v logging); parsers built lazily."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from engine.algorithms.flow_edit import slider_target
from engine.cli.main import COMMANDS
from engine.files.checkpoints import save_generator
from engine.files.flows import save_flow
from engine.files.images import read_png_parameters
from engine.jobs.i2i import I2IInput, I2IJob, I2IRequest, shipped_i2i
from engine.jobs.photo import PasteJob
from engine.jobs.render import AttributeReadJob, LatentJob, RenderJob, render_in_worker
from engine.jobs.translate import shipped_targets, with_style
from engine.models.flow import ConditionalCNF, FlowConfig
from engine.models.stylegan2 import Generator
from engine.project import EditState, ModelRef, Source, read_project, save_project
from tests.conftest import REPO
from tests.fakes import TINY_CFG, as_exported, fake_finetune
from tests.fakes import cpu_context as ctx
from tests.fakes import run_cli as cli

pytestmark = pytest.mark.usefixtures("one_thread")
FACE = REPO / "tests" / "data" / "astronaut_face.png"


@pytest.fixture(autouse=True)
def _log_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FACE_EDITOR_LOG_DIR", str(tmp_path / "logs"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny generator, a model fine-tuned from it and an attribute flow for its w_dim (files)."""
    folder = tmp_path_factory.mktemp("tiny")
    G = Generator(TINY_CFG, seed=4).eval()
    save_generator(folder / "g.pt", G)
    save_generator(folder / "t.pt", fake_finetune(G, seed=1))
    flow = ConditionalCNF(FlowConfig(input_dim=TINY_CFG.w_dim, hidden_dims=(16,), solver="rk4", step_size=0.25,
                                     divergence="exact", adjoint=False))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    save_flow(folder / "flow.pt", flow.eval())
    return folder


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_edit_on_the_embedded_default_writes_what_the_editor_renders(tmp_path, capsys):
    out = tmp_path / "a.png"
    assert cli("edit", "--seed", 3, "--psi", 0.6, "--mix", "0-1=5", "--mix", "2-3=6", "--mix", "3=7",
               "--set", "age=60", "--light", "front_light:0.5", "--set", "age=55", "--lock", "gender",
               "--out", out, "--latent-out", tmp_path / "w.npy",
               "--project-out", tmp_path / "a.fproj", "--threads", 1, "-q") == 0
    assert capsys.readouterr() == ("", "")  # -q: no bar, no summary
    state, _ = read_project(tmp_path / "a.fproj")
    assert (state.seed, state.psi, state.model, state.locks) == (3, 0.6, ModelRef(), ("gender",))
    assert state.sources == (Source(seed=5), Source(seed=6), Source(seed=7))  # the mixing panel's columns
    assert state.rows[:5] == (1, 1, 2, 3, 0) and set(state.rows[4:]) == {0}
    reading = AttributeReadJob(state.replace(edits=(), locks=()))(ctx())
    age = reading.layout.index("age")
    front = reading.preset_names.index("front_light")
    assert [(e.kind, e.key) for e in state.edits] == [("attribute", "age"), ("lighting", front), ("attribute", "age")]
    assert state.edits[-1].value == slider_target("age", 55.0, float(reading.base[age]), layout=reading.layout)
    np.testing.assert_array_equal(pixels(out), render_in_worker(ctx(), state))  # a fresh worker, bit for bit
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), LatentJob(state)(ctx()))
    assert EditState.from_dict(read_png_parameters(out)["state"]) == as_exported(state)


def test_edit_on_a_loaded_model_with_a_latent_mix_flow_and_translation(tiny, tmp_path, capsys):
    mix = tmp_path / "m.npy"
    np.save(mix, LatentJob(EditState(model=ModelRef(str(tiny / "g.pt")), seed=9))(ctx()))
    args = ["edit", "--model", tiny / "g.pt", "--flow", tiny / "flow.pt", "--seed", 2, "--cutoff", 4,
            "--noise-mode", "random", "--noise-seed", 5, "--mix", f"0-3={mix}", "--set", "age=40",
            "--translate", tiny / "t.pt", "--depth", 8, "--blend", 0.5, "--style-seed", 3, "--threads", 1,
            "--out", tmp_path / "a.png", "--project-out", tmp_path / "a.fproj"]
    assert cli(*args) == 0
    summary = capsys.readouterr().out
    assert "seed 2, 1 edit(s), translated" in summary and "a.png" in summary
    state, _ = read_project(tmp_path / "a.fproj")
    assert state.model.path == str(tiny / "g.pt") and state.model.sha256 and state.flow.path == str(tiny / "flow.pt")
    assert (state.cutoff, state.noise_mode, state.noise_seed) == (4, "random", 5)
    assert state.sources[0].name == "m" and state.rows == (1,) * 4 + (0,) * (TINY_CFG.num_ws - 4)
    tr = state.translation
    assert (tr.target.path, tr.depth, tr.blend, tr.style) == (str(tiny / "t.pt"), 8, 0.5, Source(seed=3))
    image = pixels(tmp_path / "a.png")
    np.testing.assert_array_equal(image, render_in_worker(ctx(), state))
    assert image.shape == (32, 32, 3) and not np.array_equal(image, render_in_worker(ctx(), state, translate=False))
    assert cli("render", tmp_path / "a.fproj", "--out", tmp_path / "r.png", "-q") == 0
    np.testing.assert_array_equal(pixels(tmp_path / "r.png"), image)  # the project reproduces it


def test_edit_from_a_photo_inverts_it_and_pastes_the_edit_back(tiny, tmp_path):
    assert cli("edit", "--photo", FACE, "--whole", "--model", tiny / "g.pt", "--steps", 2, "--psi", 0.5,
               "--mix", "6-7=1", "--out", tmp_path / "a.png", "--pasted-out", tmp_path / "p.png",
               "--project-out", tmp_path / "a.fproj", "--threads", 1, "-q") == 0
    state, _ = read_project(tmp_path / "a.fproj")
    assert state.photo.name == FACE.name and state.base is not None and state.rows[6:] == (1, 1)
    np.testing.assert_array_equal(pixels(tmp_path / "a.png"), render_in_worker(ctx(), state))
    pasted = pixels(tmp_path / "p.png")
    np.testing.assert_array_equal(pasted, PasteJob(state)(ctx()).pasted)
    assert pasted.shape == pixels(FACE).shape


def test_render_reproduces_a_project_and_resamples_saying_so(tiny, tmp_path, capsys):
    state = EditState(model=ModelRef(str(tiny / "g.pt")), seed=4, sources=(Source(seed=8),),
                      rows=(0, 0, 1, 1) + (0,) * (TINY_CFG.num_ws - 4))
    save_project(tmp_path / "p.fproj", state)
    native = RenderJob(state)(ctx()).image
    assert cli("render", tmp_path / "p.fproj", "--threads", 1) == 0
    assert "(32 x 32 px)" in capsys.readouterr().out
    np.testing.assert_array_equal(pixels(tmp_path / "p.png"), native)  # default: beside the project
    assert cli("render", tmp_path / "p.fproj", "--size", 80, "--out", tmp_path / "up.png") == 0
    assert "upscaled (Lanczos) from 32 x 32" in capsys.readouterr().out
    up = pixels(tmp_path / "up.png")
    assert up.shape == (80, 80, 3) and abs(up.astype(float).mean() - native.astype(float).mean()) < 3
    assert read_png_parameters(tmp_path / "up.png")["extras"]["render"] == {
        "native_size": [32, 32], "size": [80, 80], "resampled": "upscaled (Lanczos)"}
    assert cli("render", tmp_path / "p.fproj", "--size", 16, "--out", tmp_path / "down.png", "-q") == 0
    down = pixels(tmp_path / "down.png")
    blocks = native.astype(float).reshape(16, 2, 16, 2, 3).mean(axis=(1, 3))  # the area average of 2 x 2 pixels
    assert np.abs(down - blocks).max() <= 1
    assert read_png_parameters(tmp_path / "down.png")["extras"]["render"]["resampled"] == "downscaled (area average)"


def test_render_pasted_on_the_embedded_default(tmp_path, capsys):
    assert cli("invert", FACE, "--whole", "--inversion", "encoder", "--out", tmp_path, "-q") == 0
    project = tmp_path / f"{FACE.stem}.fproj"
    assert cli("render", project, "--pasted", "--size", 100, "--out", tmp_path / "p.png") == 0
    state, _ = read_project(project)
    pasted = PasteJob(state)(ctx()).pasted
    assert pixels(tmp_path / "p.png").shape[:2] == tuple(round(s * 100 / max(pasted.shape[:2]))
                                                         for s in pasted.shape[:2])
    assert cli("render", project, "--pasted", "--out", tmp_path / "q.png") == 0
    np.testing.assert_array_equal(pixels(tmp_path / "q.png"), pasted)
    assert f"pasted into {FACE.name}" in capsys.readouterr().out


def test_translate_layer_swap_into_a_loaded_target(tiny, tmp_path):
    assert cli("translate", FACE, "--method", "layer-swap", "--model", tiny / "g.pt", "--target", tiny / "t.pt",
               "--whole", "--steps", 2, "--n", 2, "--seed", 6, "--out", tmp_path, "--threads", 1, "-q") == 0
    stem = f"{FACE.stem}-layer-swap"
    state, _ = read_project(tmp_path / f"{stem}.fproj")
    assert state.photo is not None and state.translation.target.path == str(tiny / "t.pt")
    assert state.translation.depth == 16  # the Translate panel's default
    for seed in (6, 7):
        np.testing.assert_array_equal(pixels(tmp_path / f"{stem}-style{seed:05d}.png"),
                                      render_in_worker(ctx(), with_style(state, Source(seed=seed))))


def test_translate_layer_swap_on_the_embedded_default_finds_the_face(tmp_path):
    targets = {t.domain: t for t in shipped_targets()}
    if "toon" not in targets:
        pytest.skip("no toon target shipped")
    assert cli("translate", FACE, "--method", "layer-swap", "--target", "toon", "--inversion", "encoder",
               "--out", tmp_path, "-q") == 0
    state, _ = read_project(tmp_path / f"{FACE.stem}-layer-swap.fproj")
    assert state.model == ModelRef() and state.translation.target == targets["toon"].ref and state.photo.quad
    np.testing.assert_array_equal(pixels(tmp_path / f"{FACE.stem}-layer-swap.png"), render_in_worker(ctx(), state))


@pytest.mark.parametrize("method", ["bicyclegan", "tunit"])
def test_translate_with_an_image_to_image_model_matches_the_compare_window(method, tmp_path):
    shipped = {m.method: m for m in shipped_i2i()}
    if method not in shipped:
        pytest.skip(f"no {method} model shipped")
    ref = shipped[method].ref
    extra = ["--n", 2, "--seed", 4] if method == "bicyclegan" else ["--cluster", 1]
    # embedded (no --model) and loaded (--model FILE): the same file, the same samples
    assert cli("translate", FACE, "--method", method, "--whole", *extra, "--out", tmp_path / "a", "-q") == 0
    assert cli("translate", FACE, "--method", method, "--whole", *extra, "--model", ref.path,
               "--out", tmp_path / "b", "-q") == 0
    request = I2IRequest(ref, I2IInput("file", str(FACE)), n=2, seed=4, clusters=(1,) if method == "tunit" else None)
    strip = I2IJob(EditState(), request)(ctx())
    written = sorted((tmp_path / "a").glob("*.png"))
    assert [p.name for p in written] == sorted(f"{FACE.stem}-{method}-{s.stem()}.png" for s in strip.specs)
    for spec, image in zip(strip.specs, strip.images):
        name = f"{FACE.stem}-{method}-{spec.stem()}.png"
        np.testing.assert_array_equal(pixels(tmp_path / "a" / name), image)
        np.testing.assert_array_equal(pixels(tmp_path / "b" / name), image)
        assert read_png_parameters(tmp_path / "a" / name)["extras"]["i2i"]["method"] == method


def test_translate_a_folder_runs_the_folder_jobs(tiny, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / FACE.name).write_bytes(FACE.read_bytes())
    Image.new("RGB", (64, 64), (128, 128, 128)).save(photos / "grey.png")
    assert cli("translate", photos, "--method", "layer-swap", "--model", tiny / "g.pt", "--target", tiny / "t.pt",
               "--steps", 1, "--out", tmp_path / "swap", "--threads", 1) == 0
    out = capsys.readouterr().out
    assert "wrote 1 image(s)" in out and "no face in grey.png" in out
    written = tmp_path / "swap" / f"{FACE.stem}.png"
    state = EditState.from_dict(read_png_parameters(written)["state"])
    assert state.photo.name == FACE.name and state.translation.depth == 16
    if "tunit" in {m.method for m in shipped_i2i()}:
        assert cli("translate", photos, "--method", "tunit", "--whole", "--out", tmp_path / "tunit", "-q") == 0
        assert {p.name.split("-")[0] for p in (tmp_path / "tunit").glob("*.png")} == {FACE.stem, "grey"}


def test_attributes_of_a_latent_and_of_its_image_agree_with_the_attribute_panel(tiny, tmp_path, capsys):
    for model in (None, tiny / "g.pt"):
        state = EditState(model=ModelRef(None if model is None else str(model)), seed=11)
        np.save(tmp_path / "w.npy", LatentJob(state)(ctx()))
        assert cli("attributes", tmp_path / "w.npy", *(["--model", model] if model else []), "--threads", 1) == 0
        latent = json.loads(capsys.readouterr().out)
        reading = AttributeReadJob(state)(ctx())
        for name, value in latent["attributes"].items():
            assert value == pytest.approx(float(reading.base[reading.layout.index(name)]), abs=1e-6)
        assert latent["lighting"] == pytest.approx(reading.base[:9].tolist(), abs=1e-6)
        Image.fromarray(RenderJob(state)(ctx()).image).save(tmp_path / "face.png")
        assert cli("attributes", tmp_path / "face.png", "-q") == 0
        image = json.loads(capsys.readouterr().out)
        assert (image["attributes"], image["lighting"]) == (latent["attributes"], latent["lighting"])
        assert image["read"] == "as it is" and latent["read"] == "rendered"


def test_attributes_find_and_align_the_face_of_a_photo(tmp_path, capsys):
    assert cli("attributes", FACE, "--find-face") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["read"].startswith("face 0 of 1 found") and out["image_size"] == [out["estimator_size"]] * 2
    assert set(out["attributes"]) >= {"age", "gender"} and len(out["lighting"]) == 9
    assert 0 <= out["attributes"]["gender"] <= 1


@pytest.mark.parametrize("argv", [
    ["edit", "--set", "age", "--out", "x.png"],
    ["edit", "--set", "nosuch=1", "--out", "x.png"],
    ["edit", "--set", "age=500", "--out", "x.png"],
    ["edit", "--light", "nowhere:0.5", "--out", "x.png"],
    ["edit", "--light", "front_light:2", "--out", "x.png"],
    ["edit", "--mix", "0-99=3", "--out", "x.png"],
    ["edit", "--mix", "rows=3", "--out", "x.png"],
    ["edit", "--psi", "x", "--out", "x.png"],
    ["edit", "--seed", "1"],
    ["edit", "--out", "x.gif"],
    ["edit", "--latent", "missing.npy", "--out", "x.png"],
    ["edit", "--translate", "nowhere", "--out", "x.png"],
    ["edit", "--translate", "toon", "--depth", "5", "--out", "x.png"],
    ["edit", "--flow-layout", "styleflow", "--out", "x.png"],
    ["edit", "--depth", "8", "--out", "x.png"],
    ["edit", "--seed", "1", "--photo", "p.jpg", "--out", "x.png"],
    ["render", "missing.fproj"],
    ["render"],
    ["translate", "missing.jpg", "--method", "tunit", "--out", "o"],
    ["translate", "p.jpg", "--method", "nosuch", "--out", "o"],
    ["attributes", "missing.png"],
    ["nosuch"],
])
def test_bad_input_is_one_error_line_and_exit_status_2(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli(*argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line and not line.startswith(f"{argv[0]}:")]  # not the bar
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert "inside the engine" not in err  # the input's fault, said as such
    assert err.endswith(lines[0] + "\n")  # after the bar, on a line of its own
    assert not (tmp_path / "x.png").exists()


def test_a_command_needs_something_to_write_and_refuses_pasting_without_a_photo(tiny, tmp_path, capsys):
    save_project(tmp_path / "p.fproj", EditState(model=ModelRef(str(tiny / "g.pt"))))
    assert cli("render", tmp_path / "p.fproj", "--pasted") == 2
    assert "does not come from a photo" in capsys.readouterr().err
    assert cli("edit", "--model", tiny / "g.pt") == 2
    assert "Nothing to write" in capsys.readouterr().err


def test_verbose_logs_the_engine_on_stderr_and_quiet_silences_everything(tiny, tmp_path, capsys):
    argv = ["edit", "--model", tiny / "g.pt", "--seed", 1, "--out", tmp_path / "a.png"]
    assert cli("-v", *argv) == 0
    err = capsys.readouterr().err
    assert "INFO engine.files.loading: loaded generator g.pt" in err and "sha256" in err
    assert "DEBUG" not in err
    assert cli(*argv, "-vv") == 0
    assert "DEBUG engine.files.loading: g.pt: a torch file" in capsys.readouterr().err
    assert cli("-q", *argv) == 0  # -q before the command, as a global option
    assert capsys.readouterr() == ("", "")
    assert cli(*argv) == 0  # default: the bar and the summary, no log lines
    out, err = capsys.readouterr()
    assert "wrote a.png" in out and "edit:" in err and "INFO" not in err


def test_every_command_has_help_with_examples(capsys):
    for name in COMMANDS:
        if name == "train":  # the trainers' own parsers
            continue
        assert cli(name, "--help") == 0
        out = capsys.readouterr().out
        assert "examples:" in out and f"python main.py {name} " in out.split("examples:")[1], name
    assert cli("--help") == 0
    listing = capsys.readouterr().out
    assert all(f"    {name} " in listing for name in COMMANDS) and "examples:" in listing


def test_parsing_imports_only_the_chosen_command(tmp_path):
    code = ("import sys, main; p = main.build_parser(); "
            "mods = lambda: sorted(m for m in sys.modules if m.startswith(('engine.cli.', 'engine.train'))); "
            "print(mods()); p.parse_args(['info', 'x.pt']); print(mods())")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    before, after = (eval(line) for line in r.stdout.splitlines())
    assert before == ["engine.cli.common", "engine.cli.main"]
    assert after == ["engine.cli.common", "engine.cli.info", "engine.cli.main"]
