"""Edit states, project files, rendering a state (truncation, mixing, noise, previews) and exports, without Qt."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.algorithms.latents import mix_styles, seed_to_z, truncate
from engine.files.checkpoints import save_generator
from engine.files.images import read_png_parameters, to_uint8
from engine.jobs.export import BatchExportJob, load_latent, save_image, save_latent
from engine.jobs.render import (
    LatentJob,
    ModelJob,
    RenderJob,
    load_model,
    preview_resolution,
    render_state,
    row_resolutions,
    state_ws,
)
from engine.models.stylegan2 import Generator, GeneratorConfig, channels_from_base
from engine.project import (
    EditState,
    ModelRef,
    NoiseMaps,
    PhotoRef,
    ProjectError,
    Source,
    Translation,
    read_project,
    save_project,
)
from engine.worker import ModelCache
from tests.conftest import REPO
from tests.fakes import as_exported

CFG = GeneratorConfig(img_resolution=32, channels=(16, 16, 12, 8), z_dim=12, w_dim=10, mapping_layers=2)


class Ctx:
    """The slice of the worker's JobContext that jobs use."""

    def __init__(self):
        self.device = torch.device("cpu")
        self.models = ModelCache()
        self.progressed = []

    def check(self):
        pass

    def progress(self, fraction, message=""):
        self.progressed.append(fraction)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "g.pt"
    G = Generator(CFG, seed=4)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)  # trained models use their noise; a fresh one starts at 0
    save_generator(path, G)
    return path


def test_row_resolutions_follow_the_synthesis_blocks():
    full = GeneratorConfig(img_resolution=1024, channels=channels_from_base(1024, channel_base=32768, channel_max=512))
    assert row_resolutions(full) == (4, 4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128, 256, 256, 512, 512, 1024, 1024)
    assert row_resolutions(CFG) == (4, 4, 8, 8, 16, 16, 32, 32)


def test_states_validate_and_round_trip_through_project_files(tmp_path):
    latent = Source.from_latent(np.arange(80, dtype=np.float32).reshape(8, 10), name="mine")
    st = EditState(model=ModelRef("/x/g.pt", "ab" * 32), seed=7, psi=0.5, cutoff=4, noise_mode="random",
                   noise_seed=9, sources=(Source(seed=3), latent), rows=(0, 1, 1, 2, 2, 0, 0, 0),
                   locks=("age", "smile", "glasses", "age"))
    assert st.locks == ("glasses", "age", "expression")  # canonical: attribute order, aliases resolved, once each
    save_project(tmp_path / "p.fproj", st, extras={"note": "hi"})
    back, extras = read_project(tmp_path / "p.fproj")
    assert back == st and extras == {"note": "hi"}
    np.testing.assert_array_equal(back.sources[1].array(), latent.array())
    assert [p.name for p in tmp_path.iterdir()] == ["p.fproj"]
    for bad in ({"seed": -1}, {"noise_mode": "loud"}, {"rows": (0, 3)}, {"cutoff": -2}, {"psi": 9.0},
                {"locks": ("freckles",)}):
        with pytest.raises(ProjectError):
            EditState(**bad)
    with pytest.raises(ProjectError, match="either a seed or a latent"):
        Source()


def test_bad_project_files_are_refused_clearly(tmp_path):
    cases = {"a.fproj": "{not json", "b.fproj": json.dumps({"format": "other"}),
             "c.fproj": json.dumps({"format": "face-editor/project", "format_version": 99}),
             "d.fproj": json.dumps({"format": "face-editor/project", "format_version": 1, "state": {"seed": "x"}})}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ProjectError):
            read_project(tmp_path / name)
    with pytest.raises(ProjectError, match="no project file"):
        read_project(tmp_path / "missing.fproj")


def _every_part() -> EditState:
    latent = Source.from_latent(np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8), name="ref")
    return EditState(model=ModelRef("g.pt", "ab" * 32), seed=3, cutoff=2, sources=(Source(seed=4), latent),
                     rows=(0, 1, 2, 0), base=latent, noise_maps=NoiseMaps.from_arrays([np.ones((4, 4), np.float32)]),
                     photo=PhotoRef("me.jpg", "cd" * 32, ((10, 20), (10, 84), (74, 84), (74, 20)), 32),
                     translation=Translation(ModelRef("t.pt"), depth=8, blend=1.0, style=latent))


def test_edit_states_open_older_and_newer_files_and_name_the_field_that_is_wrong():
    st = _every_part()
    d = json.loads(json.dumps(st.to_dict()))
    assert EditState.from_dict(d) == st
    newer = {**d, "sharpness": 2, "translation": {**d["translation"], "opacity": 0.5},
             "sources": [d["sources"][0] | {"weight": 1}, d["sources"][1]]}
    assert EditState.from_dict(newer) == st  # keys of a newer version are ignored at every level
    assert EditState.from_dict({"seed": 5}) == EditState(seed=5)  # an older file: the rest takes the defaults
    assert read_project(REPO / "docs" / "demo.fproj")[0].mixed()
    for bad, message in (({**d, "seed": "7"}, r"seed must be a whole number, got '7'"),
                         ({**d, "translation": {**d["translation"], "depth": "8"}},
                          r"translation.depth must be a whole number, got '8'"),
                         ({**d, "translation": {"depth": 8}}, r"translation.target is missing"),
                         ({**d, "photo": {**d["photo"], "quad": [[0, 0], [1, 1]]}}, r"photo is unusable: .*corners"),
                         ({**d, "sources": [{"latent": "%%", "shape": [8]}]}, r"sources\[0\] is unusable: .*base64"),
                         ({**d, "edits": [{"kind": "attribute", "key": "age"}]}, r"edits\[0\].value is missing"),
                         ({**d, "noise_maps": {**d["noise_maps"], "zlib": "eJw="}},
                          r"noise_maps is unusable: .*unreadable"),
                         ({**d, "noise_maps": {**d["noise_maps"], "shapes": [[4, "4"]]}},
                          r"noise_maps is unusable: the noise maps: shapes\[0\]\[1\] must be a whole number")):
        with pytest.raises(ProjectError, match=r"^the edit state: " + message):
            EditState.from_dict(bad)


def test_render_matches_the_engine_functions_for_truncation_and_mixing(model_path):
    G = load_model(ModelRef(str(model_path)))
    st = EditState(model=ModelRef(str(model_path)), seed=11, psi=0.6, cutoff=5, sources=(Source(seed=12),),
                   rows=(0, 0, 1, 1, 1, 1, 0, 0))
    ws = [truncate(G.mapping(seed_to_z(s, CFG.z_dim)), G.w_avg, 0.6, cutoff=5) for s in (11, 12)]
    expected = to_uint8(G.synthesis(mix_styles(torch.stack(ws), st.rows), noise_mode="const"))[0]
    np.testing.assert_array_equal(render_state(G, st), expected)
    assert not np.array_equal(render_state(G, st.replace(rows=())), expected)


def test_noise_modes_are_reproducible_and_previews_are_smaller(model_path):
    G = load_model(ModelRef(str(model_path)))
    st = EditState(model=ModelRef(str(model_path)), seed=1, noise_mode="random", noise_seed=5)
    a, b = render_state(G, st), render_state(G, st)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, render_state(G, st.replace(noise_seed=6)))
    assert not np.array_equal(a, render_state(G, st.replace(noise_mode="none")))
    assert preview_resolution(G, 16) == 16 and preview_resolution(G, 20) == 16 and preview_resolution(G, 64) is None
    small = render_state(G, st, max_resolution=16)
    assert small.shape == (16, 16, 3)
    coarse = Image.fromarray(a).resize((16, 16), Image.BILINEAR)
    assert np.abs(np.asarray(coarse, np.float32) - small).mean() < 40  # the preview is the same picture, coarser


def test_latent_sources_are_used_as_is_and_w_dim_is_checked(model_path):
    G = load_model(ModelRef(str(model_path)))
    base = EditState(model=ModelRef(str(model_path)), seed=2, psi=0.8)
    w = state_ws(G, base)[0].numpy()
    st = base.replace(seed=40, sources=(Source.from_latent(w, name="w"),), rows=(1,) * 8)
    np.testing.assert_array_equal(render_state(G, st), render_state(G, base))
    wrong = base.replace(sources=(Source.from_latent(np.zeros(7, np.float32), name="x"),), rows=(1,) * 8)
    with pytest.raises(ProjectError, match="w_dim 7"):
        render_state(G, wrong)


def test_jobs_render_load_and_pin_the_model(model_path, tmp_path):
    ctx = Ctx()
    summary = ModelJob(ModelRef(str(model_path)))(ctx)
    assert summary.num_ws == 8 and summary.resolution == 32 and len(summary.ref.sha256) == 64
    st = EditState(model=summary.ref, seed=3)
    r = RenderJob(st, preview_limit=8)(ctx)
    assert r.image.shape == (8, 8, 3) and not r.full
    assert RenderJob(st)(ctx).full and len(ctx.models) == 1
    ws = LatentJob(st)(ctx)
    assert ws.shape == (8, 10) and ws.dtype == np.float32
    other = tmp_path / "changed.pt"
    other.write_bytes(model_path.read_bytes() + b"x")
    with pytest.raises(ProjectError, match="sha256 differs"):
        load_model(ModelRef(str(other), summary.ref.sha256))


def test_image_and_latent_exports(model_path, tmp_path):
    G = load_model(ModelRef(str(model_path)))
    st = EditState(model=ModelRef(str(model_path)), seed=3)
    img = render_state(G, st)
    for ext in (".png", ".jpg", ".webp"):
        with Image.open(save_image(tmp_path / f"a{ext}", img, state=st)) as im:
            assert im.size == (32, 32)
    params = read_png_parameters(tmp_path / "a.png")
    assert EditState.from_dict(params["state"]) == as_exported(st)  # file names and sha256 only
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), img)
    with pytest.raises(ProjectError, match="cannot export an image as .bmp"):
        save_image(tmp_path / "a.bmp", img)
    ws = state_ws(G, st)[0].numpy()
    for ext in (".npy", ".pt"):
        np.testing.assert_array_equal(load_latent(save_latent(tmp_path / f"w{ext}", ws)), ws)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ProjectError, match="cannot read a latent"):
        load_latent(tmp_path / "obj.npy")


def test_batch_export_writes_every_seed_with_its_parameters(model_path, tmp_path):
    ctx = Ctx()
    st = EditState(model=ModelRef(str(model_path)), seed=0, psi=0.5)
    paths = BatchExportJob(st, (4, 5, 6), str(tmp_path / "out"), ".png")(ctx)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["seed00004.png", "seed00005.png", "seed00006.png"]
    assert ctx.progressed == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert EditState.from_dict(read_png_parameters(paths[1])["state"]) == as_exported(st.replace(seed=5))


def test_a_photo_state_renders_its_latent_and_noise_and_round_trips(tmp_path, model_path):

    G = load_model(ModelRef(str(model_path)))
    g = torch.Generator().manual_seed(3)
    ws = torch.randn(1, G.num_ws, G.w_dim, generator=g)  # [1, num_ws, w_dim]
    noise = [torch.randn(1, 1, r, r, generator=g) for r in CFG.noise_resolutions]
    photo = PhotoRef("/photos/me.jpg", "cd" * 32, ((10, 20), (10, 84), (74, 84), (74, 20)), 32)
    st = EditState(model=ModelRef(str(model_path)), seed=5, base=Source.from_latent(ws, name="me.jpg"),
                   noise_maps=NoiseMaps.from_arrays([n[0, 0].numpy() for n in noise]), photo=photo)
    expected = to_uint8(G.synthesis(ws, noise=noise))[0]
    np.testing.assert_array_equal(render_state(G, st), expected)  # the latent and the maps, not seed 5
    assert torch.equal(state_ws(G, st.replace(seed=9)), ws)
    assert not np.array_equal(render_state(G, st.replace(noise_maps=None)), expected)

    save_project(tmp_path / "photo.fproj", st)
    back, _ = read_project(tmp_path / "photo.fproj")
    assert back == st and back.photo.quad[1] == (10.0, 84.0)
    np.testing.assert_array_equal(render_state(G, back), expected)

    wrong = NoiseMaps.from_arrays([np.zeros((4, 4), np.float32)])
    with pytest.raises(ProjectError, match="noise maps"):
        render_state(G, st.replace(noise_maps=wrong))
    with pytest.raises(ProjectError, match="latent"):
        EditState(base=Source(seed=1))
    with pytest.raises(ProjectError, match="corners"):
        PhotoRef("p.jpg", "00", ((0, 0), (1, 1)), 32)
    with pytest.raises(ProjectError, match="noise"):
        NoiseMaps(b"\0" * 12, ((2, 2),))


def test_a_translation_renders_the_face_through_the_target_and_round_trips(tmp_path, model_path):
    from engine.algorithms.layer_swap import layer_swap, multimodal_styles
    from engine.jobs.render import render_in_worker

    G = load_model(ModelRef(str(model_path)))
    T = Generator(CFG, seed=4)
    T.load_state_dict(G.state_dict())
    with torch.no_grad():
        for name, p in T.named_parameters():
            if not name.startswith("mapping."):  # FreezeFC: only the synthesis moves
                p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    target_path = tmp_path / "toon.pt"
    save_generator(target_path, T)
    T = load_model(ModelRef(str(target_path)))
    ctx = Ctx()
    st = EditState(model=ModelRef(str(model_path)), seed=2,
                   translation=Translation(ModelRef(str(target_path)), depth=8, blend=1.0))
    ws = state_ws(G, st)
    with torch.no_grad():
        swapped = to_uint8(layer_swap(G, T, ws, depth=8, blend=1.0))[0]
        styled = to_uint8(layer_swap(G, T, ws, depth=8, blend=1.0,
                                     ws_target=multimodal_styles(T, n=1, seed=5, psi=0.5)))[0]
        own = to_uint8(T.synthesis(ws))[0]
    np.testing.assert_array_equal(render_in_worker(ctx, st), swapped)
    np.testing.assert_array_equal(render_in_worker(ctx, st, translate=False), render_state(G, st))
    tr = st.translation
    np.testing.assert_array_equal(render_in_worker(ctx, st.replace(translation=dataclasses.replace(tr, depth=0))),
                                  own)  # nothing swapped: the target alone
    styled_state = st.replace(translation=dataclasses.replace(tr, style=Source(seed=5)))
    np.testing.assert_array_equal(render_in_worker(ctx, styled_state), styled)
    save_project(tmp_path / "t.fproj", styled_state)
    assert read_project(tmp_path / "t.fproj")[0] == styled_state

    other = tmp_path / "other.pt"
    save_generator(other, Generator(GeneratorConfig(img_resolution=32, channels=(8, 8, 8, 8), z_dim=12, w_dim=10,
                                                    mapping_layers=2), seed=1))
    with pytest.raises(ProjectError, match="architecture"):
        render_in_worker(ctx, st.replace(translation=Translation(ModelRef(str(other)), depth=8)))
    for bad in ({"depth": -8}, {"blend": 9.0}, {"mode": "pixels"}, {"style_psi": 7.0}):
        with pytest.raises(ProjectError):
            Translation(ModelRef(str(target_path)), **bad)
