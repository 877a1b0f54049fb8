"""Image-to-image back-ends for the editor (engine.files.i2i, engine.jobs.i2i): one loader for every BicycleGAN / TUNIT
file layout, input fitting with its notice, the line drawing, seeded and reproducible samples, the z sweep,
reference images, cluster styles, exports whose metadata reproduce a sample, and the folder batch."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import ModelFormatError
from engine.files import i2i
from engine.files.checkpoints import save_generator
from engine.files.images import read_png_parameters, to_uint8
from engine.jobs.i2i import (
    I2IExportJob,
    I2IFolderJob,
    I2IInput,
    I2IJob,
    I2IRequest,
    SampleSpec,
    SaveImageJob,
    pin,
    shipped_i2i,
)
from engine.models import bicyclegan, tunit
from engine.models.stylegan2 import Generator
from engine.photos.align import align_image, whole_image_transform
from engine.photos.read import load_photo
from engine.project import EditState, ModelRef, PhotoRef, ProjectError
from engine.worker import InlineContext
from tests.fakes import TINY_CFG, as_exported

from .i2i_models import (
    SIZE,
    save_bicyclegan,
    save_bicyclegan_released,
    save_tunit,
    save_tunit_released,
    tiny_bicyclegan,
    tiny_tunit,
    tunit_styles,
)

CFG = TINY_CFG
DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("i2i")
    b, t = tiny_bicyclegan(), tiny_tunit()
    gen = root / "base.pt"
    save_generator(gen, Generator(CFG, seed=4).eval())
    return {"bicyclegan": save_bicyclegan(root / "bicyclegan.pt", b), "tunit": save_tunit(root / "tunit.pt", t),
            "released": save_bicyclegan_released(root / "edges2x", b),
            "g_only": save_bicyclegan_released(root / "g_only", b, encoder=False) / "latest_net_G.pth",
            "ckpt": save_tunit_released(root / "model_7.ckpt", t), "b": b, "t": t, "generator": gen}


@pytest.fixture
def ctx(one_thread):
    return InlineContext(device=torch.device("cpu"))


@pytest.fixture
def state(files):
    return EditState(model=ModelRef(str(files["generator"])), seed=3, psi=0.7)


def ref(path) -> ModelRef:
    return pin(ModelRef(path=str(path)))


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def face(size: int, *, seed: int = 0, w: int | None = None) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, w or size, 3), dtype=np.uint8)


# ----- loading


def test_load_i2i_tells_the_method_and_reads_the_trainers_extras(files):
    b = i2i.load_i2i(files["bicyclegan"])
    assert (b.method, b.size, b.nz, b.has_encoder, b.wants_lines, b.recipe) == \
        ("bicyclegan", SIZE, 4, True, True, "synthetic")
    t = i2i.load_i2i(files["tunit"])
    assert (t.method, t.size, t.recipe, sorted(t.styles), t.cluster_names) == \
        ("tunit", SIZE, "synthetic", [0, 2], {0: "photo", 2: "sketch"})
    torch.testing.assert_close(t.styles[2], tunit_styles(files["t"])[2])
    assert t.cluster_label(2) == "cluster 2 (sketch)" and t.cluster_label(1) == "cluster 1"


def test_released_layouts_load_and_translate_like_the_project_files(files):
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    z = i2i.code_for_seed(4, 11)[None]
    own, released = i2i.load_i2i(files["bicyclegan"]), i2i.load_i2i(files["released"])
    assert released.size == files["b"]["E"].cfg.image_size and not released.wants_lines and released.recipe == "ffhq"
    torch.testing.assert_close(i2i.translate(released, x, z), i2i.translate(own, x, z))
    alone = i2i.load_i2i(files["g_only"])
    assert alone.method == "bicyclegan" and not alone.has_encoder
    with pytest.raises(ModelFormatError, match="no encoder"):
        i2i.reference_code(alone, x)
    ckpt = i2i.load_i2i(files["ckpt"])
    assert ckpt.method == "tunit" and ckpt.styles == {}
    s = torch.randn(2, 8)
    torch.testing.assert_close(i2i.translate(ckpt, x, s), i2i.translate(i2i.load_i2i(files["tunit"]), x, s))


def test_load_i2i_refuses_other_files_clearly(tmp_path, files):
    (tmp_path / "notes.pt").write_bytes(b"not a model")
    with pytest.raises(ModelFormatError):
        i2i.load_i2i(tmp_path / "notes.pt")
    with pytest.raises(ModelFormatError, match="not a BicycleGAN or TUNIT model"):
        i2i.load_i2i(files["generator"])  # a StyleGAN2 generator
    with pytest.raises(ModelFormatError, match="does not exist"):
        i2i.load_i2i(tmp_path / "missing.pt")
    with pytest.raises(ModelFormatError, match="neither a BicycleGAN folder"):
        i2i.load_i2i(tmp_path)


# ----- input preparation


def test_fit_input_keeps_an_image_of_the_right_size_exactly():
    image = face(SIZE)
    x, notice = i2i.fit_input(image, SIZE)
    assert notice is None and x.shape == (1, 3, SIZE, SIZE)
    np.testing.assert_array_equal(((x[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy(), image)


def test_fit_input_crops_and_resizes_with_a_notice():
    x, notice = i2i.fit_input(face(48, w=80), SIZE)
    assert x.shape == (1, 3, SIZE, SIZE) and float(x.min()) >= -1 and float(x.max()) <= 1
    assert "80×48" in notice and "centre square" in notice and f"{SIZE}×{SIZE}" in notice
    _, notice = i2i.fit_input(face(100), SIZE)
    assert notice.startswith("The input is 100×100 px: it was resized")
    flat = np.full((64, 64, 3), 77, np.uint8)
    torch.testing.assert_close(i2i.fit_input(flat, SIZE)[0], torch.full((1, 3, SIZE, SIZE), 77 / 127.5 - 1))
    with pytest.raises(ValueError, match="RGB uint8"):
        i2i.fit_input(np.zeros((8, 8), np.uint8), SIZE)


def test_line_drawing_draws_dark_lines_at_edges_and_white_elsewhere():
    x = torch.ones(1, 3, 64, 64)
    x[..., 20:44] = -1.0  # a dark band on white: two vertical edges
    lines = i2i.line_drawing(x)
    assert lines.shape == x.shape and torch.equal(lines[:, 0], lines[:, 2])
    assert float(lines[0, 0, :, 4].min()) == 1.0 and float(lines[0, 0, :, 32].min()) == 1.0  # flat areas: white
    assert float(lines[0, 0, 32, 18:23].min()) < -0.5  # the edge at column 20: a dark line
    assert torch.equal(i2i.line_drawing(torch.zeros(1, 3, 16, 16)), torch.ones(1, 3, 16, 16))


# ----- samples


def test_bicyclegan_samples_are_seeded_and_each_is_reproduced_alone(ctx, state, files):
    req = I2IRequest(ref(files["bicyclegan"]), lines=False, n=3, seed=5)
    strip = I2IJob(state, req)(ctx)
    assert strip.method == "bicyclegan" and strip.labels == ("z seed 5", "z seed 6", "z seed 7")
    assert strip.notice is None and strip.input_image.shape == (SIZE, SIZE, 3)  # the tiny generator draws 32 px
    assert not np.array_equal(strip.images[0], strip.images[1])  # different codes, different outputs
    for spec, image in zip(strip.specs, strip.images):
        alone = I2IJob(state, req.only(spec))(ctx)
        assert alone.specs == (spec,)
        np.testing.assert_array_equal(alone.images[0], image)
    x, _ = i2i.fit_input(strip.input_image, SIZE)
    G = files["b"]["G"]
    expected = to_uint8(bicyclegan.translate(G, x, bicyclegan.sample_codes(1, 4, seed=6)).clamp(-1, 1))[0]
    np.testing.assert_array_equal(strip.images[1], expected)


def test_lines_turn_the_input_into_a_line_drawing_first(ctx, state, files):
    plain = I2IJob(state, I2IRequest(ref(files["bicyclegan"]), lines=False, n=1))(ctx)
    drawn = I2IJob(state, I2IRequest(ref(files["bicyclegan"]), lines=None, n=1))(ctx)  # the model wants lines
    x, _ = i2i.fit_input(plain.input_image, SIZE)
    np.testing.assert_array_equal(drawn.input_image, to_uint8(i2i.line_drawing(x))[0])
    assert not np.array_equal(drawn.images[0], plain.images[0])


def test_the_z_sweep_runs_from_one_seed_to_the_other(ctx, state, files):
    model = ref(files["bicyclegan"])
    a, b = (I2IJob(state, I2IRequest(model, lines=False, n=1, seed=s))(ctx).images[0] for s in (2, 9))
    sweep = I2IJob(state, I2IRequest(model, lines=False, seed=2, sweep_to=9, ts=(0.0, 0.5, 1.0)))(ctx)
    assert sweep.labels == ("z 2 → 9 at 0.00", "z 2 → 9 at 0.50", "z 2 → 9 at 1.00")
    assert np.abs(sweep.images[0].astype(int) - a).max() <= 1 and np.abs(sweep.images[2].astype(int) - b).max() <= 1
    assert not np.array_equal(sweep.images[1], sweep.images[0])
    mid = i2i.sweep_code(4, 2, 9, 0.5)
    z2, z9 = i2i.code_for_seed(4, 2), i2i.code_for_seed(4, 9)
    assert abs(float(mid.norm()) - float((z2.norm() + z9.norm()) / 2)) < 0.25 * float(z2.norm() + z9.norm())
    with pytest.raises(ProjectError, match=r"\[0, 1\]"):
        I2IRequest(model, sweep_to=3, ts=(1.5,))


def test_a_reference_image_adds_its_encoded_sample_first(ctx, state, files, tmp_path):
    path = tmp_path / "ref.png"
    Image.fromarray(face(64, seed=3)).save(path)
    strip = I2IJob(state, I2IRequest(ref(files["bicyclegan"]), lines=False, n=2, reference=str(path)))(ctx)
    assert strip.labels == ("from ref.png", "z seed 0", "z seed 1")
    x, _ = i2i.fit_input(strip.input_image, SIZE)
    code = bicyclegan.encode(files["b"]["E"], i2i.fit_input(face(64, seed=3), SIZE)[0])
    expected = to_uint8(bicyclegan.translate(files["b"]["G"], x, code).clamp(-1, 1))[0]
    np.testing.assert_array_equal(strip.images[0], expected)


def test_tunit_translates_with_every_cluster_style_and_a_reference(ctx, state, files, tmp_path):
    strip = I2IJob(state, I2IRequest(ref(files["tunit"])))(ctx)
    assert strip.labels == ("cluster 0 (photo)", "cluster 2 (sketch)")
    x, _ = i2i.fit_input(strip.input_image, SIZE)
    styles = tunit_styles(files["t"])
    for image, k in zip(strip.images, (0, 2)):
        expected = to_uint8(tunit.translate(files["t"]["G_EMA"], x, styles[k]).clamp(-1, 1))[0]
        np.testing.assert_array_equal(image, expected)
    picked = I2IJob(state, I2IRequest(ref(files["tunit"]), clusters=(2,)))(ctx)
    np.testing.assert_array_equal(picked.images[0], strip.images[1])
    path = tmp_path / "style.png"
    Image.fromarray(face(SIZE, seed=8)).save(path)
    with_ref = I2IJob(state, I2IRequest(ref(files["tunit"]), reference=str(path), clusters=()))(ctx)
    s = tunit.reference_style(files["t"]["C_EMA"], i2i.fit_input(face(SIZE, seed=8), SIZE)[0])
    np.testing.assert_array_equal(with_ref.images[0], to_uint8(tunit.translate(files["t"]["G_EMA"], x, s))[0])
    with pytest.raises(ProjectError, match="no cluster styles"):
        I2IJob(state, I2IRequest(ref(files["ckpt"])))(ctx)
    with pytest.raises(ValueError, match="no style for cluster 1"):
        I2IJob(state, I2IRequest(ref(files["tunit"]), clusters=(1,)))(ctx)


def test_inputs_photo_and_file(ctx, state, files, tmp_path):
    with pytest.raises(ProjectError, match="not made from a photo"):
        I2IJob(state, I2IRequest(ref(files["tunit"]), I2IInput("photo")))(ctx)
    with pytest.raises(ProjectError, match="needs its path"):
        I2IInput("file")
    strip = I2IJob(state, I2IRequest(ref(files["tunit"]), I2IInput("file", str(DATA / "astronaut_face.png"))))(ctx)
    assert "resized to 32×32" in strip.notice and strip.input_image.shape == (SIZE, SIZE, 3)
    changed = dataclasses.replace(state, seed=4)
    assert not np.array_equal(I2IJob(changed, I2IRequest(ref(files["tunit"])))(ctx).input_image,
                              I2IJob(state, I2IRequest(ref(files["tunit"])))(ctx).input_image)


def test_the_photo_input_is_the_aligned_crop_of_the_photo(ctx, state, files):
    photo = load_photo(DATA / "astronaut_face.png")
    t = whole_image_transform(*photo.size, size=48)
    with_photo = state.replace(photo=PhotoRef(str(DATA / "astronaut_face.png"), photo.sha256, t.quad, t.size))
    strip = I2IJob(with_photo, I2IRequest(ref(files["tunit"]), I2IInput("photo")))(ctx)
    assert "48×48" in strip.notice
    np.testing.assert_array_equal(strip.input_image, to_uint8(i2i.fit_input(align_image(photo.pixels, t),
                                                                                SIZE)[0])[0])


def test_a_changed_model_file_is_refused(ctx, state, files, tmp_path):
    path = tmp_path / "b.pt"
    shutil.copy(files["bicyclegan"], path)
    pinned = ref(path)
    save_bicyclegan(path, tiny_bicyclegan() | {"E": bicyclegan.Encoder(bicyclegan.BicycleEncoderConfig(nz=4, nef=4,
                                                                                                 n_layers=2), seed=9)})
    with pytest.raises(ProjectError, match="sha256 differs"):
        I2IJob(state, I2IRequest(pinned))(ctx)


# ----- exports


def test_exported_samples_keep_what_reproduces_them(ctx, state, files, tmp_path):
    req = I2IRequest(ref(files["bicyclegan"]), lines=True, n=2, seed=40)
    written = I2IExportJob(state, req, str(tmp_path / "out"))(ctx)
    assert [Path(p).name for p in written] == ["bicyclegan-z00040.png", "bicyclegan-z00041.png"]
    strip = I2IJob(state, req)(ctx)
    for path, image in zip(written, strip.images):
        np.testing.assert_array_equal(pixels(path), image)
        params = read_png_parameters(path)
        assert EditState.from_dict(params["state"]) == as_exported(state)
        info = params["extras"]["i2i"]
        assert info["method"] == "bicyclegan" and info["model"]["sha256"] == req.model.sha256 and info["lines"]
        sample = {k: v for k, v in info["sample"].items() if k != "reference"}
        again = I2IJob(state, req.only(SampleSpec(**sample)))(ctx)
        np.testing.assert_array_equal(again.images[0], pixels(path))
    sweep = I2IExportJob(state, dataclasses.replace(req, sweep_to=3, ts=(0.0, 1.0)), str(tmp_path / "sweep"))(ctx)
    assert [Path(p).name for p in sweep] == ["bicyclegan-z00040-00003-t0000.png", "bicyclegan-z00040-00003-t1000.png"]


def test_save_image_job_writes_a_sample_with_its_reference(ctx, state, files, tmp_path):
    path = tmp_path / "ref.png"
    Image.fromarray(face(SIZE, seed=2)).save(path)
    req = I2IRequest(ref(files["tunit"]), reference=str(path), clusters=())
    strip = I2IJob(state, req)(ctx)
    out = SaveImageJob(str(tmp_path / "one.png"), strip.images[0], state, req.only(strip.specs[0]), strip.specs[0],
                       "tunit")(ctx)
    info = read_png_parameters(out)["extras"]["i2i"]
    assert info["sample"]["reference"]["path"] == path.name and len(info["sample"]["reference"]["sha256"]) == 64
    plain = SaveImageJob(str(tmp_path / "plain.jpg"), strip.images[0])(ctx)
    with Image.open(plain) as im:
        assert im.format == "JPEG"


def test_folder_batch_writes_every_sample_of_every_photo(ctx, files, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(face(40, seed=1, w=60)).save(photos / "a.png")
    Image.fromarray(face(50, seed=2)).save(photos / "b.jpg")
    (photos / "broken.png").write_bytes(b"not an image")
    (photos / "notes.txt").write_text("skip me")
    req = I2IRequest(ref(files["bicyclegan"]), n=2, seed=1)
    summary = I2IFolderJob(req, str(photos), str(tmp_path / "out"), align=False)(ctx)
    assert sorted(Path(p).name for p in summary.written) == ["a-bicyclegan-z00001.png", "a-bicyclegan-z00002.png",
                                                             "b-bicyclegan-z00001.png", "b-bicyclegan-z00002.png"]
    assert [name for name, _ in summary.failed] == ["broken.png"] and summary.no_face == ()
    assert all(pixels(p).shape == (SIZE, SIZE, 3) for p in summary.written)
    with pytest.raises(ProjectError, match="another folder"):
        I2IFolderJob(req, str(photos), str(photos))(ctx)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProjectError, match="no photos"):
        I2IFolderJob(req, str(tmp_path / "empty"), str(tmp_path / "x"))(ctx)
    faces = I2IFolderJob(req, str(photos), str(tmp_path / "aligned"))(ctx)  # noise has no face to find
    assert sorted(faces.no_face) == ["a.png", "b.jpg"] and faces.written == ()


def test_shipped_models_are_listed_from_their_manifests(tmp_path, files):
    assert shipped_i2i(tmp_path) == []
    shutil.copy(files["bicyclegan"], tmp_path / "bicyclegan.pt")
    (tmp_path / "bicyclegan.json").write_text(json.dumps({"sha256": "ab", "domains": {"A": "edges", "B": "photo"}}))
    (tmp_path / "tunit.json").write_text(json.dumps({"domains": ["photo", "toon"]}))  # its .pt is missing
    found = shipped_i2i(tmp_path)
    assert [(s.method, s.label(), s.ref.sha256) for s in found] == [("bicyclegan", "BicycleGAN: edges → photo", "ab")]


def test_the_embedded_models_translate_a_face(ctx, state):
    shipped = {s.method: s for s in shipped_i2i()}
    assert set(shipped) == {"bicyclegan", "tunit"}
    for s in shipped.values():
        strip = I2IJob(state, I2IRequest(s.ref, n=2))(ctx)
        assert "resized to 64×64" in strip.notice  # the tiny generator draws 32 px faces
        assert all(im.shape == (64, 64, 3) and im.std() > 5 for im in strip.images)
    assert shipped["bicyclegan"].label() == "BicycleGAN: edges → photo"
