"""Photo jobs without Qt: scan (read + detect), invert with previews / stop / refine, paste back, the recipe."""
from __future__ import annotations

import dataclasses
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.algorithms.flow_edit import AttributeEdit
from engine.algorithms.projection import InversionSettings
from engine.files.checkpoints import save_generator
from engine.files.images import to_uint8
from engine.jobs.photo import InvertJob, PasteJob, ReconstructionJob, ScanJob, alignment_recipe, photo_latent
from engine.jobs.render import load_model, render_state
from engine.models.stylegan2 import Generator, GeneratorConfig
from engine.photos.align import box_transform
from engine.project import EditState, ModelRef, ProjectError, Source, read_project, save_project
from tests.fakes import RecordingContext as Ctx

CFG = GeneratorConfig(img_resolution=32, channels=(16, 16, 12, 8), z_dim=12, w_dim=10, mapping_layers=2)
DATA = Path(__file__).resolve().parents[1] / "data"
BOX = (40.0, 24.0, 104.0, 88.0)  # where the face sits in the test photo: a 64 px square


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    G = Generator(CFG, seed=4)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
    path = tmp_path_factory.mktemp("m") / "g.pt"
    save_generator(path, G, extras={"data": "synth:photo"})
    return path


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory, model_path):
    """A 160x120 photo whose face (a generated image, upscaled 2x) fills BOX; grey elsewhere."""
    G = load_model(ModelRef(str(model_path)))
    with torch.no_grad():
        face = to_uint8(G(torch.randn(1, CFG.z_dim, generator=torch.Generator().manual_seed(5))))[0]
    photo = np.full((120, 160, 3), 90, np.uint8)
    x0, y0 = int(BOX[0]), int(BOX[1])
    photo[y0:y0 + 64, x0:x0 + 64] = np.asarray(Image.fromarray(face).resize((64, 64), Image.BICUBIC))
    path = tmp_path_factory.mktemp("p") / "me.png"
    Image.fromarray(photo).save(path)
    return path


def test_alignment_recipe_follows_the_training_data(model_path, tmp_path):
    assert alignment_recipe(load_model(ModelRef(str(model_path)))) == "synthetic"
    other = tmp_path / "ffhq.pt"
    save_generator(other, Generator(CFG, seed=1))
    assert alignment_recipe(load_model(ModelRef(str(other)))) == "ffhq"


def test_scan_finds_the_astronaut_face(model_path):
    scan = ScanJob(str(DATA / "astronaut_face.png"), EditState(model=ModelRef(str(model_path))))(Ctx())
    assert len(scan.faces) == 1 and scan.size == 32 and scan.recipe == "synthetic"
    assert scan.photo.pixels.shape[2] == 3 and scan.faces[0].landmarks.shape == (5, 2)


def test_scan_reports_a_file_that_is_not_a_photo(model_path, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    with pytest.raises(ValueError):
        ScanJob(str(bad), EditState(model=ModelRef(str(model_path))))(Ctx())


def test_invert_previews_improves_and_becomes_a_reproducible_state(model_path, photo_path, tmp_path):
    state = EditState(model=ModelRef(str(model_path)), seed=11)
    ctx = Ctx()
    settings = InversionSettings(steps=40)
    out = InvertJob(state, str(photo_path), box_transform(BOX, size=32), settings, use_encoder=True)(ctx)
    first = ctx.partials[0]
    assert first.step == 0 and first.aligned is not None and first.aligned.shape == (32, 32, 3)
    assert [p.step for p in ctx.partials[1:]] == list(range(10, 41, 10))
    assert out.steps == 40 and not out.encoder and not out.stopped  # no encoder fits this model
    assert out.psnr > first.psnr + 3
    st = out.state
    assert st.photo.name == "me.png" and st.photo.size == 32 and st.base is not None and st.seed == 11
    np.testing.assert_array_equal(st.base.array().shape, (CFG.num_ws, CFG.w_dim))
    G = load_model(state.model)
    np.testing.assert_array_equal(render_state(G, st), out.image)  # the state renders the reconstruction
    save_project(tmp_path / "p.fproj", st)
    np.testing.assert_array_equal(render_state(G, read_project(tmp_path / "p.fproj")[0]), out.image)

    assert st.noise_maps is None  # the default keeps the model's constant noise
    refined = InvertJob(st, str(photo_path), box_transform(BOX, size=32), settings, refine=True)(Ctx())
    assert refined.psnr > out.psnr - 0.05  # refining starts from the result, it does not start over

    noisy = InversionSettings(steps=20, optimize_noise=True, noise_init="random")
    own = InvertJob(state, str(photo_path), box_transform(BOX, size=32), noisy)(Ctx())
    assert [m.shape for m in own.state.noise_maps.arrays()] == [(r, r) for r in CFG.noise_resolutions]
    np.testing.assert_array_equal(render_state(G, own.state), own.image)  # rendered with its fitted maps
    again = InvertJob(own.state, str(photo_path), box_transform(BOX, size=32), settings, refine=True)(Ctx())
    assert again.state.noise_maps is not None and again.psnr > own.psnr - 0.05


def with_edits(state: EditState) -> EditState:
    """``state`` with style mixing, an attribute edit and a lock on top of its photo latent."""
    return state.replace(sources=(Source(seed=9),), rows=(0,) * 4 + (1,) * (CFG.num_ws - 4),
                         edits=(AttributeEdit("attribute", "age", 1.5),), locks=("gender",))


def test_refine_keeps_the_edits_and_never_ends_worse_than_its_start(model_path, photo_path):
    transform = box_transform(BOX, size=32)
    out = InvertJob(EditState(model=ModelRef(str(model_path))), str(photo_path), transform,
                    InversionSettings(steps=60))(Ctx())
    edited = with_edits(out.state)
    ctx = Ctx()
    # a large step from a fitted code: the plain optimiser ends lower than it started
    refined = InvertJob(edited, str(photo_path), transform, InversionSettings(steps=10, lr=0.5), refine=True)(ctx)
    assert refined.refine and refined.steps == 10
    assert refined.start_psnr == pytest.approx(out.psnr, abs=1e-4) == pytest.approx(ctx.partials[0].psnr, abs=1e-4)
    assert refined.psnr >= refined.start_psnr
    st = refined.state
    assert (st.sources, st.rows, st.edits, st.locks) == (edited.sources, edited.rows, edited.edits, edited.locks)
    assert st.photo == edited.photo and st.seed == edited.seed
    if refined.kept_step == 0:
        assert st.base == edited.base  # no step was better: the start is kept as it was
    assert ReconstructionJob(st)(Ctx()).psnr == pytest.approx(refined.psnr, abs=1e-4)

    better = InvertJob(edited, str(photo_path), transform, InversionSettings(steps=40), refine=True)(Ctx())
    assert better.psnr > out.psnr and better.kept_step > 0 and better.state.base != edited.base
    assert better.state.edits == edited.edits and better.state.rows == edited.rows


def test_refine_fine_tunes_with_a_smaller_step_than_a_fresh_inversion(model_path, photo_path, monkeypatch):
    import engine.jobs.photo as photo_jobs

    seen = []
    real = photo_jobs.invert
    monkeypatch.setattr(photo_jobs, "invert", lambda *a, settings, **kw: seen.append(settings) or real(
        *a, settings=settings, **kw))
    transform = box_transform(BOX, size=32)
    asked = InversionSettings(steps=4)
    out = InvertJob(EditState(model=ModelRef(str(model_path))), str(photo_path), transform, asked)(Ctx())
    InvertJob(out.state, str(photo_path), transform, asked, refine=True)(Ctx())
    fresh, refine = seen
    assert fresh == asked
    assert refine.lr == pytest.approx(asked.lr * photo_jobs.REFINE_LR_SCALE) and refine.rampup == 0.0
    assert refine.lr < fresh.lr and dataclasses.replace(refine, lr=asked.lr, rampup=asked.rampup) == asked


def test_reconstruction_measures_the_photo_latent_and_reports_a_missing_photo(model_path, photo_path, tmp_path):
    copy = tmp_path / "copy.png"
    shutil.copy(photo_path, copy)
    out = InvertJob(EditState(model=ModelRef(str(model_path))), str(copy), box_transform(BOX, size=32),
                    InversionSettings(steps=20))(Ctx())
    edited = with_edits(out.state).replace(seed=4, psi=0.3)  # what is edited on top does not change the reading
    rec = ReconstructionJob(edited)(Ctx())
    assert rec.key == photo_latent(out.state) == photo_latent(edited) != photo_latent(out.state.replace(base=None))
    assert rec.psnr == pytest.approx(out.psnr, abs=1e-4) and rec.ssim == pytest.approx(out.ssim, abs=1e-5)
    np.testing.assert_array_equal(rec.image, out.image)
    np.testing.assert_array_equal(rec.aligned, out.aligned)
    copy.unlink()
    with pytest.raises(ProjectError, match="the photo copy.png is no longer at"):
        ReconstructionJob(out.state)(Ctx())
    with pytest.raises(ProjectError, match="not come from a photo"):
        ReconstructionJob(EditState())(Ctx())


def test_stop_keeps_the_result_so_far(model_path, photo_path):
    ctx = Ctx()
    stop = threading.Event()
    job = InvertJob(EditState(model=ModelRef(str(model_path))), str(photo_path), box_transform(BOX, size=32),
                    InversionSettings(steps=200), stop=stop)
    ctx.partial = lambda r: stop.set() if r.step >= 10 else None
    out = job(ctx)
    assert out.stopped and 10 <= out.steps < 200 and out.state.base is not None


def test_invert_refuses_a_wrong_size_and_encoder_only_without_encoder(model_path, photo_path):
    state = EditState(model=ModelRef(str(model_path)))
    with pytest.raises(ValueError, match="32 px"):
        InvertJob(state, str(photo_path), box_transform(BOX, size=64), InversionSettings(steps=5))(Ctx())
    with pytest.raises(ValueError, match="no encoder"):
        InvertJob(state, str(photo_path), box_transform(BOX, size=32), InversionSettings(), optimise=False)(Ctx())


def test_paste_back_puts_the_face_in_the_photo_and_nothing_else(model_path, photo_path):
    out = InvertJob(EditState(model=ModelRef(str(model_path))), str(photo_path), box_transform(BOX, size=32),
                    InversionSettings(steps=20))(Ctx())
    res = PasteJob(out.state, seamless=False)(Ctx())
    photo = np.asarray(Image.open(photo_path).convert("RGB"))
    assert res.pasted.shape == photo.shape and res.aligned.shape == (32, 32, 3)
    outside = np.ones(photo.shape[:2], bool)
    outside[20:92, 36:108] = False  # the box and a margin
    np.testing.assert_array_equal(res.pasted[outside], photo[outside])
    inside = res.pasted[30:82, 46:98].astype(float)
    face = np.asarray(Image.fromarray(out.image).resize((64, 64), Image.BICUBIC))[6:58, 6:58].astype(float)
    assert np.abs(inside - face).mean() < 6  # the rendered face, resampled to the photo's scale
    seamless = PasteJob(out.state)(Ctx()).pasted  # along the face's outline, in the photo's colours and detail
    np.testing.assert_array_equal(seamless[outside], photo[outside])
    assert (seamless != photo).any()
    assert np.abs(seamless[30:82, 46:98].astype(float) - photo[30:82, 46:98]).mean() < np.abs(inside - photo[
        30:82, 46:98]).mean()  # the photo's own detail and colours stay: closer to it than the square paste
    with pytest.raises(ProjectError, match="not come from a photo"):
        PasteJob(EditState())(Ctx())


def test_the_invert_command_writes_the_round_trip(model_path, photo_path, tmp_path, capsys):
    from main import main

    out = tmp_path / "out"
    argv = ["invert", str(photo_path), "--model", str(model_path), "--out", str(out), "--box", "40,24,104,88",
            "--method", "optimiser", "--steps", "15", "--tune", "off", "--threads", "1", "--quiet"]
    assert main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["me-aligned.png", "me-inverted.png", "me-latent.npy", "me-pasted.png", "me.fproj"]
    state, extras = read_project(out / "me.fproj")
    inverted = np.asarray(Image.open(out / "me-inverted.png"))
    np.testing.assert_array_equal(render_state(load_model(state.model), state), inverted)
    assert extras["inversion"]["steps"] == 15 and extras["inversion"]["recipe"] == "synthetic"
    np.testing.assert_array_equal(np.load(out / "me-latent.npy"), state.base.array())
    assert np.asarray(Image.open(out / "me-pasted.png")).shape == (120, 160, 3)

    assert main(argv[:6] + ["--face", "2", "--quiet"]) == 2
    assert "face" in capsys.readouterr().err


def test_the_attribute_readout_and_latent_of_a_tuned_photo_come_from_the_tuned_face_shown(tmp_path):
    from engine.algorithms.pivotal import TuneSettings
    from engine.jobs.photo import TuneJob
    from engine.jobs.render import AttributeReadJob, LatentJob, RenderJob, cached_tools, read_condition
    from engine.photos.align import face_transform

    ctx = Ctx()
    astronaut = str(DATA / "astronaut_face.png")
    scan = ScanJob(astronaut, EditState())(ctx)
    transform = face_transform(scan.faces[0], size=scan.size, recipe=scan.recipe)
    fit = InvertJob(EditState(), astronaut, transform, InversionSettings(steps=10))(ctx)
    tuned = TuneJob(fit.state, settings=TuneSettings(steps=20, seconds=None), folder=str(tmp_path))(ctx).state
    tools = cached_tools(ctx, tuned)
    edited = tuned.replace(edits=(AttributeEdit("attribute", "age", 60.0),))
    for state in (tuned, edited):  # read first, so that nothing else has solved or read these states before
        reading, latent = AttributeReadJob(state)(ctx), LatentJob(state)(ctx)
        shown = RenderJob(state)(ctx).image
        np.testing.assert_allclose(reading.current, read_condition(tools.estimator, shown, layout=tools.layout)[0],
                                   rtol=0, atol=1e-6)
        np.testing.assert_array_equal(latent, LatentJob(state)(ctx))
    assert not np.allclose(AttributeReadJob(tuned)(ctx).current, AttributeReadJob(fit.state)(ctx).current)
