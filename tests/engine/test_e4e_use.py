"""e4e files in use: a published-layout file (the fixture's encoder with a rosinality decoder written by our own
converter) opens as generator + encoder, inverts a photo in one pass with e4e's preprocessing and refines it; an
encoder file pairs with a separate generator of its architecture (refused otherwise), and the pairing survives a
project round trip. The model manager's facts and pairing checks (``engine.jobs.models``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.algorithms.projection import InversionSettings
from engine.convert.rosinality import generator_from_rosinality, generator_to_rosinality
from engine.errors import ModelFormatError
from engine.files.checkpoints import save_generator
from engine.files.e4e import load_e4e, open_model
from engine.files.flows import save_flow
from engine.files.loading import load_generator
from engine.jobs.models import ModelsJob, PairJob, memory_bytes, pairing_problem, precision_of
from engine.jobs.photo import InvertJob, ScanJob, encoder_for
from engine.jobs.render import ModelJob, cached_file
from engine.models.e4e import E4E, encode, prepare_photos
from engine.models.flow import ConditionalCNF, FlowConfig
from engine.models.stylegan2 import Generator, GeneratorConfig
from engine.photos.align import face_transform
from engine.project import EditState, ModelRef, ProjectError, read_project, save_project
from engine.worker import InlineContext
from tests.e4e_files import encoder_only, fixture_checkpoint, generator_for, write_published

PHOTO = str(Path(__file__).resolve().parents[1] / "data" / "astronaut_face.png")


def _ctx() -> InlineContext:
    return InlineContext(device=torch.device("cpu"))


@pytest.fixture(scope="module")
def published(reference_dir, tmp_path_factory):
    """(path of the published-layout e4e file, the generator its decoder was written from)."""
    return write_published(reference_dir, tmp_path_factory.mktemp("e4e") / "e4e_published.pt")


@pytest.fixture(scope="module")
def separate(reference_dir, published, tmp_path_factory):
    """(encoder-only e4e file, a generator file of its architecture, one of another architecture)."""
    folder = tmp_path_factory.mktemp("pair")
    _, G = published
    save_generator(folder / "g.pt", G)
    cfg = load_e4e(fixture_checkpoint(reference_dir)).cfg
    save_generator(folder / "other.pt", generator_for(cfg.n_styles - 2, cfg.w_dim, seed=1))
    return encoder_only(reference_dir, folder / "encoder.pt"), folder / "g.pt", folder / "other.pt"


def _transform(ctx, state):
    scan = ScanJob(PHOTO, state)(ctx)
    return face_transform(scan.faces[0], size=scan.size, recipe=scan.recipe)


def _same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# --- the rosinality writer ------------------------------------------------------------------------------------

def test_the_rosinality_writer_reproduces_the_fixtures_file(reference_dir):
    ck = torch.load(reference_dir / "stylegan2" / "rosinality_s32.pt", weights_only=True)["checkpoint"]
    sd, latent_avg = generator_to_rosinality(load_generator(ck))
    assert list(sd) == list(ck["g_ema"])  # rosinality's key order, kernels and noise buffers included
    for k, v in ck["g_ema"].items():
        assert torch.equal(sd[k], v), k
    assert torch.equal(latent_avg, ck["latent_avg"])


def test_the_rosinality_writer_round_trips_our_generator():
    G = generator_for(8, 12, seed=3)
    sd, latent_avg = generator_to_rosinality(G)
    cfg, native, _ = generator_from_rosinality(sd, latent_avg=latent_avg)
    assert cfg == G.cfg
    own = G.state_dict()
    assert sorted(native) == sorted(own)
    for k, v in native.items():
        assert torch.equal(v, own[k]), k


def test_the_rosinality_writer_refuses_what_rosinality_cannot_express():
    G = Generator(GeneratorConfig(img_resolution=8, channels=(4, 4), z_dim=6, w_dim=5, mapping_layers=1))
    with pytest.raises(ModelFormatError, match="z_dim 6 differs from w_dim 5"):
        generator_to_rosinality(G)


# --- opening a published-layout file --------------------------------------------------------------------------

def test_a_published_layout_file_opens_as_its_generator_and_its_encoder(published):
    path, G = published
    opened = open_model(path)
    assert isinstance(opened, E4E) and opened.average == "file"
    _same_weights(opened.generator, G)
    ctx = _ctx()
    summary = ModelJob(ModelRef(str(path)))(ctx)
    assert summary.format == "e4e" and "e4e encoder" in summary.encoder
    assert (summary.num_ws, summary.w_dim, summary.resolution) == (G.num_ws, G.w_dim, G.img_resolution)
    assert isinstance(cached_file(ctx, summary.ref), E4E)  # one cache entry: encoder and generator together


def test_a_generator_file_opens_as_a_generator_and_other_files_keep_the_generators_refusal(separate, tmp_path):
    _, g_path, _ = separate
    _same_weights(open_model(g_path), load_generator(g_path))
    bad = tmp_path / "list.pt"
    torch.save([1, 2], bad)
    with pytest.raises(ModelFormatError, match="list.pt"):
        open_model(bad)


def test_an_encoder_without_generator_cannot_be_opened_as_the_model(separate):
    encoder, _, _ = separate
    with pytest.raises(ProjectError, match="without a generator.*Pair e4e encoder"):
        ModelJob(ModelRef(str(encoder)))(_ctx())


# --- inversion with e4e ---------------------------------------------------------------------------------------

def test_invert_job_encodes_in_one_pass_with_e4es_preprocessing(published):
    path, _ = published
    ctx = _ctx()
    state = EditState(model=ModelJob(ModelRef(str(path)))(ctx).ref)
    out = InvertJob(state, PHOTO, _transform(ctx, state), InversionSettings(steps=5), optimise=False)(ctx)
    assert out.encoder and out.steps == 0
    e4e = load_e4e(path)
    want = encode(e4e, prepare_photos(e4e, out.aligned))[0].numpy()  # [n_styles, w_dim]
    np.testing.assert_array_equal(out.state.base.array(), want)
    assert encoder_for(ctx, state.model).kind == "e4e"


def test_refining_the_e4e_guess_improves_the_psnr(published):
    path, _ = published
    ctx = _ctx()
    state = EditState(model=ModelJob(ModelRef(str(path)))(ctx).ref)
    transform = _transform(ctx, state)
    guess = InvertJob(state, PHOTO, transform, InversionSettings(steps=5), optimise=False)(ctx)
    refined = InvertJob(guess.state, PHOTO, transform, InversionSettings(steps=30), refine=True)(ctx)
    assert refined.start_psnr == pytest.approx(guess.psnr)
    assert refined.psnr > guess.psnr + 0.5


# --- pairing a separate encoder -------------------------------------------------------------------------------

def test_a_separate_encoder_pairs_with_a_generator_of_its_architecture(separate):
    encoder, g_path, _ = separate
    ctx = _ctx()
    state = EditState(model=ModelRef(str(g_path)))
    pairing = PairJob(state, ModelRef(str(encoder)), "encoder")(ctx)
    assert pairing.ref.sha256 is not None and pairing.facts.problem is None
    paired = state.replace(encoder=pairing.ref)
    out = InvertJob(paired, PHOTO, _transform(ctx, paired), InversionSettings(steps=5), optimise=False)(ctx)
    e4e = load_e4e(encoder).pair_with(load_generator(g_path))
    np.testing.assert_array_equal(out.state.base.array(), encode(e4e, prepare_photos(e4e, out.aligned))[0].numpy())
    # without the pairing the generator has no encoder: encoder-only inversion is refused
    with pytest.raises(ValueError, match="no encoder fits"):
        InvertJob(state, PHOTO, _transform(ctx, state), InversionSettings(steps=5), optimise=False)(ctx)


def test_a_pairing_of_another_architecture_is_refused(separate):
    encoder, g_path, other = separate
    ctx = _ctx()
    with pytest.raises(ModelFormatError, match=r"encoder.pt cannot be the e4e encoder of other.pt: .* rows") as err:
        PairJob(EditState(model=ModelRef(str(other))), ModelRef(str(encoder)), "encoder")(ctx)
    assert "Error" not in str(err.value)
    state = EditState(model=ModelRef(str(other)), encoder=ModelRef(str(encoder)))
    with pytest.raises(ModelFormatError, match="rows"):
        InvertJob(state, PHOTO, _transform(ctx, state), InversionSettings(steps=5), optimise=False)(ctx)
    with pytest.raises(ModelFormatError, match="not an e4e encoder"):
        PairJob(EditState(model=ModelRef(str(g_path))), ModelRef(str(other)), "encoder")(ctx)


def test_the_pairing_round_trips_through_a_project_and_reproduces_the_inversion(separate, tmp_path):
    encoder, g_path, _ = separate
    ctx = _ctx()
    state = EditState(model=ModelRef(str(g_path)))
    state = state.replace(encoder=PairJob(state, ModelRef(str(encoder)), "encoder")(ctx).ref)
    transform = _transform(ctx, state)
    first = InvertJob(state, PHOTO, transform, InversionSettings(steps=5), optimise=False)(ctx)
    saved = save_project(tmp_path / "face.fproj", first.state)
    text = saved.read_text()
    assert '"encoder"' in text and str(encoder.parent) not in text  # stored relative to the project
    again, _ = read_project(saved)
    assert again.encoder == first.state.encoder
    second = InvertJob(again, PHOTO, transform, InversionSettings(steps=5), optimise=False)(_ctx())
    np.testing.assert_array_equal(second.state.base.array(), first.state.base.array())


# --- the model manager's facts --------------------------------------------------------------------------------

def test_memory_counts_every_tensor_once(published):
    path, G = published
    want = sum(t.numel() * t.element_size() for t in [*G.parameters(), *G.buffers()])
    assert memory_bytes(G) == want == memory_bytes(G, G)
    e4e = open_model(path)
    enc = sum(t.numel() * t.element_size() for t in [*e4e.encoder.parameters(), *e4e.encoder.buffers()])
    assert memory_bytes(e4e) == enc + memory_bytes(e4e.generator) + e4e.latent_avg.numel() * 4


def test_the_models_job_lists_the_opened_and_recent_files_with_their_pairings(published, separate):
    path, G = published
    encoder, g_path, other = separate
    ctx = _ctx()
    state = EditState(model=ModelJob(ModelRef(str(path)))(ctx).ref)
    rows = ModelsJob(state, recent=(str(path), str(encoder), str(other)))(ctx)
    by_name = {r.name: r for r in rows}
    model = by_name[path.name]
    assert (model.role, model.format, model.resolution, model.in_use, model.loaded) == \
        ("generator", "e4e", G.img_resolution, True, True)
    assert "e4e IR-SE encoder" in model.architecture and f"{G.num_ws} × {G.w_dim} W+" in model.architecture
    assert model.precision == "float32" and model.device == "cpu" and model.memory == memory_bytes(open_model(path))
    assert "encoder: its own (e4e)" in model.pairs and any(p.startswith("CNF:") for p in model.pairs)
    flow = next(r for r in rows if r.role == "flow")
    assert "latents of" in flow.problem  # the embedded default flow does not fit this generator's W
    assert by_name[encoder.name].role == "encoder" and by_name[encoder.name].problem is None
    assert by_name[other.name].role == "generator" and not by_name[other.name].in_use
    assert len([r for r in rows if r.name == path.name]) == 1  # a recent file in use is listed once


def test_pairing_checks_a_flows_width_and_layout_and_a_fine_tunes_architecture(separate, tmp_path):
    _, g_path, other = separate
    G, T = load_generator(g_path), load_generator(other)
    flow = ConditionalCNF(FlowConfig(input_dim=G.w_dim, hidden_dims=(4,), cond_dim=3, solver="rk4", step_size=0.5,
                                     divergence="exact", adjoint=False)).eval()
    flow.layout = None
    assert "condition layout" in pairing_problem(G, flow, "flow")
    save_flow(tmp_path / "f.pt", flow)
    assert pairing_problem(G, G, "fine-tune") is None
    assert "another architecture" in pairing_problem(G, T, "fine-tune")
    assert "not a StyleFlow" in pairing_problem(G, G, "flow")
    with pytest.raises(ModelFormatError, match="f.pt cannot be the attribute flow .* condition layout"):
        PairJob(EditState(model=ModelRef(str(g_path))), ModelRef(str(tmp_path / "f.pt")), "flow")(_ctx())


def test_precision_and_memory_follow_a_reduced_precision_generator():
    G = generator_for(8, 12, seed=2)
    full = memory_bytes(G)
    assert precision_of(G) == "float32"
    G.to_precision(torch.float16)
    reduced = {p.dtype for p in G.parameters()}
    assert reduced == {torch.float16, torch.float32}
    assert set(precision_of(G).split(" + ")) == {"float16", "float32"}
    assert memory_bytes(G) < full  # the reduced blocks' weights take half the bytes


def test_a_pairing_with_another_w_dimension_is_refused(reference_dir, separate, tmp_path):
    encoder, _, _ = separate
    cfg = load_e4e(fixture_checkpoint(reference_dir)).cfg
    save_generator(tmp_path / "wide.pt", generator_for(cfg.n_styles, 2 * cfg.w_dim, seed=4))
    with pytest.raises(ModelFormatError, match=rf"{cfg.w_dim} values .* takes {cfg.n_styles} rows x {2 * cfg.w_dim}"):
        PairJob(EditState(model=ModelRef(str(tmp_path / "wide.pt"))), ModelRef(str(encoder)), "encoder")(_ctx())
