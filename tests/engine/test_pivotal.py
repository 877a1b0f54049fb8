"""The "keep the person" tuning (pivotal tuning): it fits the photo better than the latent alone, is stored as
float16 weight differences pinned by sha256, and a project that names them reopens to the same pixels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.algorithms.pivotal import TuneSettings, apply_deltas, load_deltas, pivotal_tune, save_deltas
from engine.algorithms.projection import InversionSettings
from engine.files.checkpoints import save_generator
from engine.files.images import to_uint8
from engine.files.storage import file_sha256
from engine.jobs.photo import InvertJob, PasteJob, ReconstructionJob, TuneJob
from engine.jobs.render import RenderJob, load_model
from engine.models.stylegan2 import Generator, GeneratorConfig
from engine.photos.align import box_transform
from engine.project import EditState, ModelRef, ProjectError, read_project, save_project, verify_files
from tests.fakes import RecordingContext as Ctx

CFG = GeneratorConfig(img_resolution=32, channels=(16, 16, 12, 8), z_dim=12, w_dim=10, mapping_layers=2)
BOX = (40.0, 24.0, 104.0, 88.0)
QUICK = TuneSettings(steps=40, seconds=None, lr=3e-3)


@pytest.fixture(scope="module")
def inverted(tmp_path_factory):
    """A tiny generator, a photo holding one of its faces in BOX (2x), and a 20-step inversion of it."""
    folder = tmp_path_factory.mktemp("pti")
    G = Generator(CFG, seed=4)
    model = folder / "g.pt"
    save_generator(model, G, extras={"data": "synth:photo"})
    with torch.no_grad():
        face = to_uint8(load_model(ModelRef(str(model)))(torch.randn(1, CFG.z_dim,
                                                                    generator=torch.Generator().manual_seed(7))))[0]
    photo = np.full((120, 160, 3), 90, np.uint8)
    photo[24:88, 40:104] = np.asarray(Image.fromarray(face).resize((64, 64), Image.BICUBIC))
    photo_path = folder / "me.png"
    Image.fromarray(photo).save(photo_path)
    out = InvertJob(EditState(model=ModelRef(str(model))), str(photo_path), box_transform(BOX, size=32),
                    InversionSettings(steps=20))(Ctx())
    return out, folder


def test_tuning_fits_the_photo_better_and_is_stored_as_pinned_float16_differences(inverted, tmp_path):
    out, _ = inverted
    ctx = Ctx()
    tuned = TuneJob(out.state, settings=QUICK, folder=str(tmp_path))(ctx)
    assert tuned.start_psnr == pytest.approx(out.psnr, abs=1e-3)
    assert tuned.psnr > out.psnr + 2.0 and tuned.steps == 40
    ref = tuned.state.tuning
    assert ref is not None and Path(ref.path).parent == tmp_path.resolve() and file_sha256(ref.path) == ref.sha256
    assert Path(ref.path).name == f"tuning-{ref.sha256}.pt" and tuned.bytes == Path(ref.path).stat().st_size
    deltas = load_deltas(ref.path)
    assert deltas and all(d.dtype == torch.float16 for d in deltas.values())
    G = load_model(out.state.model)
    n_params = sum(p.numel() for p in G.synthesis.parameters())
    assert tuned.bytes < 2 * n_params + 64 * 1024  # two bytes a weight, plus the container
    assert tuned.state.base == out.state.base and tuned.state.photo == out.state.photo
    assert ctx.partials and ctx.progressed[-1] == pytest.approx(1.0)
    # the readout after reopening measures the tuned model, not the latent alone
    assert ReconstructionJob(tuned.state)(Ctx()).psnr == pytest.approx(tuned.psnr, abs=1e-4)


def test_a_project_with_a_tuning_reopens_to_the_same_pixels(inverted, tmp_path):
    out, _ = inverted
    ctx = Ctx()
    tuned = TuneJob(out.state, settings=QUICK, folder=str(tmp_path / "tunings"))(ctx)
    rendered = RenderJob(tuned.state)(ctx).image
    np.testing.assert_array_equal(rendered, tuned.image)
    pasted = PasteJob(tuned.state)(ctx).pasted
    save_project(tmp_path / "me.fproj", tuned.state)
    state, _ = read_project(tmp_path / "me.fproj")
    assert state == tuned.state
    verify_files(state)
    fresh = Ctx()
    np.testing.assert_array_equal(RenderJob(state)(fresh).image, rendered)
    np.testing.assert_array_equal(PasteJob(state)(fresh).pasted, pasted)
    untuned = RenderJob(out.state)(fresh).image
    assert np.abs(untuned.astype(int) - rendered).mean() > 1  # the tuning is what makes the difference


def test_the_tuning_is_saved_with_the_project_and_a_moved_project_reopens_to_the_same_pixels(inverted, tmp_path):
    import shutil

    from engine.project import project_files

    out, _ = inverted
    ctx = Ctx()
    tuned = TuneJob(out.state, settings=TuneSettings(steps=3, seconds=None), folder=str(tmp_path / "data"))(ctx)
    rendered = RenderJob(tuned.state)(ctx).image
    project = tmp_path / "work" / "me.fproj"
    save_project(project, tuned.state)
    copy = project_files(project) / Path(tuned.state.tuning.path).name
    assert file_sha256(copy) == tuned.state.tuning.sha256
    assert f'"me.files/{copy.name}"' in project.read_text()  # relative: the project's folder carries it
    save_project(project, tuned.state)  # saving again neither copies again nor changes the file
    assert sorted(p.name for p in project_files(project).iterdir()) == [copy.name]
    shutil.rmtree(tmp_path / "data")  # the tuning's first home is gone, the project moves to another place
    moved = shutil.copytree(tmp_path / "work", tmp_path / "elsewhere")
    shutil.rmtree(tmp_path / "work")
    state, _ = read_project(moved / "me.fproj")
    assert Path(state.tuning.path) == (moved / "me.files" / copy.name).resolve()
    verify_files(state)
    np.testing.assert_array_equal(RenderJob(state)(Ctx()).image, rendered)
    save_project(tmp_path / "auto.fproj", state, bundle=False)  # an autosave names the tuning where it is
    assert not project_files(tmp_path / "auto.fproj").exists()
    save_deltas(copy := Path(state.tuning.path), {k: v + 1 for k, v in load_deltas(copy).items()})
    with pytest.raises(ProjectError, match="changed since it was made"):
        save_project(tmp_path / "other" / "me.fproj", state)
    assert not (tmp_path / "other" / "me.fproj").exists()


def test_a_changed_or_missing_tuning_is_refused(inverted, tmp_path):
    out, _ = inverted
    tuned = TuneJob(out.state, settings=TuneSettings(steps=3, seconds=None), folder=str(tmp_path))(Ctx())
    path = Path(tuned.state.tuning.path)
    deltas = load_deltas(path)
    save_deltas(path, {k: v + 1 for k, v in deltas.items()})
    with pytest.raises(ProjectError, match="sha256 differs"):
        RenderJob(tuned.state)(Ctx())
    with pytest.raises(ProjectError, match="sha256 differs"):
        verify_files(tuned.state)
    path.unlink()
    with pytest.raises(ProjectError, match="does not exist"):
        RenderJob(tuned.state)(Ctx())


def test_a_new_inversion_drops_the_tuning_and_only_photo_faces_can_be_tuned(inverted, tmp_path):
    out, folder = inverted
    tuned = TuneJob(out.state, settings=TuneSettings(steps=2, seconds=None), folder=str(tmp_path))(Ctx())
    again = InvertJob(tuned.state, tuned.state.photo.path, box_transform(BOX, size=32),
                      InversionSettings(steps=2))(Ctx())
    assert again.state.tuning is None
    with pytest.raises(ProjectError, match="from a photo"):
        TuneJob(EditState(model=out.state.model))(Ctx())


def test_pivotal_tune_leaves_the_model_alone_stops_when_asked_and_refuses_bad_input():
    G = Generator(CFG, seed=1)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    ws = G.mapping(torch.randn(1, CFG.z_dim, generator=torch.Generator().manual_seed(0))).detach()
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    res = pivotal_tune(G, ws, target, settings=TuneSettings(steps=5, seconds=None))
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    assert res.steps == 5 and res.deltas
    with torch.no_grad():  # the reported image is the rounded deltas' rendering
        again = apply_deltas(G, res.deltas).synthesis(ws, noise_mode="const").clamp(-1, 1)
    assert torch.equal(again, res.image)
    stopped = pivotal_tune(G, ws, target, settings=TuneSettings(steps=5, seconds=None), should_stop=lambda: True)
    assert stopped.steps == 0 and stopped.stopped and not stopped.deltas
    with pytest.raises(ValueError, match="another model"):
        apply_deltas(G, {"no.such.layer": torch.zeros(3, dtype=torch.float16)})
    name, p = next(iter(G.synthesis.named_parameters()))
    with pytest.raises(ValueError, match="another model"):
        apply_deltas(G, {name: torch.zeros(*p.shape, 2, dtype=torch.float16)})
    with pytest.raises(ValueError, match="W\\+"):
        pivotal_tune(G, ws[:, :2], target)
    with pytest.raises(ValueError, match="steps"):
        TuneSettings(steps=-1)


def test_a_file_that_is_not_a_tuning_is_refused(tmp_path):
    torch.save({"format": "something else"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a 'keep the person' tuning"):
        load_deltas(tmp_path / "x.pt")
    (tmp_path / "y.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable tuning"):
        load_deltas(tmp_path / "y.pt")
    torch.save({"format": "face-editor/pivotal-deltas", "deltas": {"a": torch.zeros(2)}}, tmp_path / "z.pt")
    with pytest.raises(ValueError, match="float16"):
        load_deltas(tmp_path / "z.pt")


def test_the_invert_command_keeps_the_person(inverted, tmp_path, capsys):
    from main import main

    out, folder = inverted
    dest = tmp_path / "out"
    argv = ["invert", out.state.photo.path, "--model", out.state.model.path, "--out", str(dest), "--box",
            "40,24,104,88", "--method", "optimiser", "--steps", "10", "--threads", "1", "--quiet"]
    assert main(argv + ["--keep-person", "--keep-person-steps", "15"]) == 0
    state, extras = read_project(dest / "me.fproj")
    assert state.tuning is not None and Path(state.tuning.path).parent == (dest / "tunings").resolve()
    kept = extras["inversion"]["keep_person"]
    assert kept["steps"] == 15 and extras["inversion"]["psnr"] > kept["psnr_before"]
    np.testing.assert_array_equal(RenderJob(state)(Ctx()).image, np.asarray(Image.open(dest / "me-inverted.png")))
    assert main(argv + ["--keep-person", "--keep-person-seconds", "0"]) == 2
    assert "--keep-person-seconds" in capsys.readouterr().err


def test_the_quick_tuning_takes_what_the_fit_left_of_the_round_trips_budget():
    from engine.jobs.photo import MIN_TUNE_SECONDS, PHOTO_SECONDS, TUNE_FINISH_SECONDS, quick_tuning

    assert quick_tuning(3.0).seconds == pytest.approx(PHOTO_SECONDS - 3.0 - TUNE_FINISH_SECONDS)
    assert quick_tuning(3.0, budget=8.0).seconds == pytest.approx(8.0 - 3.0 - TUNE_FINISH_SECONDS)
    assert quick_tuning(PHOTO_SECONDS + 4.0).seconds == MIN_TUNE_SECONDS  # a slow fit still gets a short tuning
    assert quick_tuning(0.0).steps == TuneSettings().steps  # and the steps cap it on a fast machine


def test_the_invert_command_tunes_quickly_by_default_and_not_with_tune_off(inverted, tmp_path):
    from main import main

    out, _ = inverted
    argv = ["invert", out.state.photo.path, "--model", out.state.model.path, "--box", "40,24,104,88", "--method",
            "optimiser", "--steps", "10", "--threads", "1", "--quiet"]
    assert main(argv + ["--out", str(tmp_path / "quick")]) == 0
    state, extras = read_project(tmp_path / "quick" / "me.fproj")
    kept = extras["inversion"]["keep_person"]
    assert state.tuning is not None and kept["mode"] == "quick" and kept["steps"] > 0
    assert extras["inversion"]["psnr"] > kept["psnr_before"]
    assert main(argv + ["--out", str(tmp_path / "off"), "--tune", "off"]) == 0
    state, extras = read_project(tmp_path / "off" / "me.fproj")
    assert state.tuning is None and "keep_person" not in extras["inversion"]


def test_the_tuning_after_a_fit_follows_the_mode_and_never_tunes_a_guess_or_a_stopped_fit():
    import dataclasses

    from engine.jobs.photo import TUNINGS, InversionOutcome, quick_tuning, tuning_after

    face = np.zeros((4, 4, 3), np.uint8)
    fit = InversionOutcome(EditState(), face, face, psnr=25.0, ssim=0.8, steps=150, seconds=3.0, encoder=True,
                           stopped=False, start_psnr=12.0, kept_step=150, refine=False)
    person = TuneSettings(steps=7, seconds=None)
    assert TUNINGS == ("quick", "person", "off")
    assert tuning_after(fit, "quick", person=person) == quick_tuning(3.0)
    assert tuning_after(fit, "person", person=person) is person
    assert tuning_after(fit, "off", person=person) is None
    assert tuning_after(dataclasses.replace(fit, steps=0), "quick", person=person) is None  # an encoder's guess
    assert tuning_after(dataclasses.replace(fit, stopped=True), "person", person=person) is None
    with pytest.raises(ValueError, match="tuning"):
        tuning_after(fit, "slow", person=person)
