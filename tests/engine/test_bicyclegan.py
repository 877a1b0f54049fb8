"""BicycleGAN: every case of the shared fixture through the public loaders (the fixture's state dicts written to
disk as the released ``latest_net_*.pth`` files, beside the ``opt.txt`` of its config), the full-size released
layouts, other configurations inferred from their weights (with the choices the weights cannot show passed), strict
refusals, input-size errors and the inference helpers."""
from __future__ import annotations

import pytest
import torch

from engine.algorithms.bicyclegan_losses import (
    BicycleGANWeights,
    backward_generator_encoder,
    bicyclegan_forward,
    discriminator_losses,
    generator_encoder_losses,
)
from engine.convert.bicyclegan import (
    RELEASED_FILES,
    load_bicyclegan,
    load_bicyclegan_discriminator,
    load_bicyclegan_encoder,
    load_bicyclegan_generator,
)
from engine.errors import ModelFormatError
from engine.models.bicyclegan import (
    BicycleEncoderConfig,
    Encoder,
    MultiscaleDiscriminator,
    MultiscaleDiscriminatorConfig,
    UnetConfig,
    UnetGenerator,
    bicyclegan_checkpoint,
    encode,
    sample_codes,
    slerp,
    translate,
)

from .i2i_helpers import LOSS_TOL, TOL, fixture_case, load_fixture, load_manifests, manifest_entry, zeros
from .i2i_models import write_training_options

pytestmark = pytest.mark.usefixtures("one_thread")
GRAD_TOL = LOSS_TOL  # float64 gradients: only the fixture's own float32 rounding is left, 2.6e-5 on every CPU (3.8x)


@pytest.fixture(scope="module")
def fx(reference_dir):
    return load_fixture(reference_dir, "bicyclegan_s128.pt")


@pytest.fixture(scope="module")
def released(fx, tmp_path_factory):
    """The fixture's checkpoint as a folder of released files with the opt.txt of its training options."""
    folder = tmp_path_factory.mktemp("bicyclegan")
    for name, filename in fx["checkpoint_files"].items():
        torch.save(fx["checkpoint"][name], folder / filename)
    write_training_options(folder, fx["config"])
    return folder


@pytest.fixture(scope="module")
def nets(released):
    return load_bicyclegan(released)


def test_fixture_files_are_the_released_names(fx):
    assert fx["checkpoint_files"] == RELEASED_FILES


def test_inferred_architecture_matches_the_fixture_config(fx, nets):
    c = fx["config"]
    G, E, D = nets["G"], nets["E"], nets["D"]
    assert (G.cfg.input_nc, G.cfg.output_nc, G.cfg.nz, G.cfg.ngf) == (c["input_nc"], c["output_nc"], c["nz"], c["ngf"])
    assert (G.cfg.norm, G.cfg.upsample, G.cfg.where_add) == (c["norm"], c["upsample"], c["where_add"])
    assert G.cfg.size_multiple == c["crop_size"]  # unet_128: 7 levels down to a 1x1 bottleneck
    assert (E.cfg.kind, E.cfg.nef, E.cfg.nz, E.cfg.image_size) == ("resnet", c["nef"], c["nz"], c["crop_size"])
    assert D.cfg.num_D == c["num_Ds"] and D.cfg.ndf[0] == c["ndf"] and D.cfg.norm == c["norm"]
    for name in ("G", "E", "D", "D2"):
        assert list(nets[name].state_dict()) == list(fx["checkpoint"][name]), f"{name}: key order differs"


@torch.no_grad()
def test_G_forward_eval(fx, released):
    G = load_bicyclegan_generator(released / "latest_net_G.pth")
    i, e = fixture_case(fx, "G_forward_eval")
    torch.testing.assert_close(G(i["A"], i["z"]), e["out"], **TOL)


@torch.no_grad()
def test_E_forward_eval(fx, released):
    E = load_bicyclegan_encoder(released / "latest_net_E.pth")
    i, e = fixture_case(fx, "E_forward_eval")
    mu, logvar = E(i["B"])
    torch.testing.assert_close(mu, e["mu"], **TOL)
    torch.testing.assert_close(logvar, e["logvar"], **TOL)


@torch.no_grad()
@pytest.mark.parametrize("name, case, key", [("D", "D_forward_eval", "B"), ("D2", "D2_forward_eval", "x")])
def test_D_forward_eval(fx, released, name, case, key):
    D = load_bicyclegan_discriminator(released / RELEASED_FILES[name], name=name)
    i, e = fixture_case(fx, case)
    out = D(i[key])
    assert len(out) == 2
    torch.testing.assert_close(out[0], e["out0"], **TOL)
    torch.testing.assert_close(out[1], e["out1"], **TOL)


def test_test_encoded(fx, nets):
    i, e = fixture_case(fx, "test_encoded")
    z0 = encode(nets["E"], i["B"])
    torch.testing.assert_close(z0, e["z0"], **TOL)
    torch.testing.assert_close(translate(nets["G"], i["A"], z0), e["fake"], **TOL)


def test_train_step_losses(fx, released):
    """One training step against the float32 expectations, run in float64: G's first-layer gradient sums over every
    pixel and its float32 rounding moves with the CPU's kernels (6.4e-5 measured), past the README's 1e-4 tier."""
    nets = {k: n.double() for k, n in load_bicyclegan(released).items()}  # fresh copies: gradients accumulate
    G, E, D, D2 = nets["G"], nets["E"], nets["D"], nets["D2"]
    c = fx["config"]
    w = BicycleGANWeights(lambda_L1=c["lambda_L1"], lambda_GAN=c["lambda_GAN"], lambda_GAN2=c["lambda_GAN2"],
                          lambda_z=c["lambda_z"], lambda_kl=c["lambda_kl"], gan_mode=c["gan_mode"],
                          conditional_D=c["conditional_D"], use_same_D=c["use_same_D"])
    i, e = fixture_case(fx, "train_step_losses")
    i = {k: v.double() for k, v in i.items()}
    fwd = bicyclegan_forward(G, E, i["real_A"], i["real_B"], eps=i["eps"], z_random=i["z_random"], weights=w)
    losses = generator_encoder_losses(fwd, D, D2, weights=w)
    backward_generator_encoder(losses, G, E)
    d_losses = discriminator_losses(fwd, D, D2, weights=w)
    got = {**fwd, **losses, **d_losses}
    checked = 0
    for key, value in e.items():
        if key.startswith("grad/"):
            net, pname = key[len("grad/"):].split(":")
            actual = dict(nets[net].named_parameters())[pname].grad
            torch.testing.assert_close(actual, value.double(), **GRAD_TOL, msg=lambda m, k=key: f"{k}: {m}")
        else:
            tol = LOSS_TOL if key.startswith("loss") else TOL
            torch.testing.assert_close(got[key].detach(), value.double(), **tol, msg=lambda m, k=key: f"{k}: {m}")
        checked += 1
    assert checked == len(e) >= 20
    # the G/E backward leaves the discriminators untouched; E got no share of the latent regression
    assert all(p.grad is None for p in list(D.parameters()) + list(D2.parameters()))


def test_latent_regression_reaches_G_only(fx):
    """Without the z-L1 term G's gradient changes and E's does not: E is frozen for it."""
    i, _ = fixture_case(fx, "train_step_losses")
    grads = {}
    for lambda_z in (0.5, 0.0):
        nets = load_bicyclegan(fx["checkpoint"], options=fx["config"])
        w = BicycleGANWeights(lambda_z=lambda_z)
        fwd = bicyclegan_forward(nets["G"], nets["E"], i["real_A"], i["real_B"], eps=i["eps"],
                                 z_random=i["z_random"], weights=w)
        backward_generator_encoder(generator_encoder_losses(fwd, nets["D"], nets["D2"], weights=w), nets["G"],
                                   nets["E"])
        grads[lambda_z] = (nets["G"].model.down[0].weight.grad.clone(), nets["E"].fc[0].weight.grad.clone())
    assert not torch.allclose(grads[0.5][0], grads[0.0][0])
    torch.testing.assert_close(grads[0.5][1], grads[0.0][1], rtol=0, atol=0)


# --- released full-size layouts -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifests(reference_dir):
    return load_manifests(reference_dir, "bicyclegan")


def _assert_layout(model, entry):
    sd = model.state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == entry["keys"]
    assert sum(p.numel() for p in model.parameters()) == entry["num_values"]


@pytest.mark.parametrize("input_nc", [1, 3])
def test_released_generator_layouts(manifests, input_nc):
    entry = manifest_entry(manifests, f"G_unet_256_add_all_input_nc{input_nc}")
    G = load_bicyclegan_generator(zeros(entry["keys"]), nl="relu", norm="instance", use_dropout=False)
    assert G.cfg == UnetConfig(input_nc=input_nc, output_nc=3, nz=8, ngf=64, num_downs=8)
    _assert_layout(G, entry)


def test_released_encoder_and_discriminator_layouts(manifests):
    entry = manifest_entry(manifests, "E_resnet_256")
    E = load_bicyclegan_encoder(zeros(entry["keys"]))
    assert E.cfg == BicycleEncoderConfig(kind="resnet", input_nc=3, nz=8, nef=64, n_layers=5, vae_like=True)
    assert E.cfg.image_size == 256
    _assert_layout(E, entry)
    entry = manifest_entry(manifests, "D_basic_256_multi")
    D = load_bicyclegan_discriminator(zeros(entry["keys"]))
    assert D.cfg == MultiscaleDiscriminatorConfig(input_nc=3, ndf=(64, 32), n_layers=3)
    _assert_layout(D, entry)


# --- other configurations, inferred from their weights ----------------------------------------------------------

def _roundtrip_generator(cfg, tmp_path, **given):
    G = UnetGenerator(cfg, seed=3).eval()
    path = tmp_path / "latest_net_G.pth"
    torch.save(G.state_dict(), path)
    G2 = load_bicyclegan_generator(path, **{"nl": cfg.nl, "use_dropout": cfg.use_dropout, **given})
    assert G2.cfg == cfg
    x = torch.rand(2, cfg.input_nc, cfg.size_multiple, cfg.size_multiple) * 2 - 1
    z = torch.randn(2, cfg.nz) if cfg.nz else None
    with torch.no_grad():
        torch.testing.assert_close(G2(x, z), G(x, z), rtol=0, atol=0)


@pytest.mark.parametrize("cfg, given", [
    (UnetConfig(input_nc=3, output_nc=2, nz=5, ngf=2, num_downs=6, norm="batch", upsample="bilinear"), {}),
    (UnetConfig(input_nc=1, output_nc=3, nz=3, ngf=2, num_downs=5, norm="none", nl="lrelu"),
     dict(norm="none", nl="lrelu")),
    (UnetConfig(input_nc=2, output_nc=3, nz=4, ngf=2, num_downs=6, where_add="input", norm="instance"),
     dict(nz=4)),
    (UnetConfig(input_nc=3, output_nc=3, nz=4, ngf=2, num_downs=5, where_add="input", norm="none",
                     upsample="bilinear"), dict(input_nc=3)),
    (UnetConfig(input_nc=3, output_nc=3, nz=0, ngf=2, num_downs=5, where_add="input", norm="batch"),
     dict(nz=0)),
])
def test_generator_variants_round_trip(cfg, given, tmp_path):
    _roundtrip_generator(cfg, tmp_path, **given)


@pytest.mark.parametrize("cfg", [
    BicycleEncoderConfig(kind="resnet", input_nc=3, nz=4, nef=4, n_layers=3, norm="batch"),
    BicycleEncoderConfig(kind="resnet", input_nc=1, nz=6, nef=4, n_layers=3, norm="none", vae_like=False),
    BicycleEncoderConfig(kind="conv", input_nc=3, nz=8, nef=4, n_layers=4, norm="instance"),
    BicycleEncoderConfig(kind="conv", input_nc=3, nz=8, nef=4, n_layers=3, norm="none"),
    BicycleEncoderConfig(kind="conv", input_nc=3, nz=2, nef=4, n_layers=3, norm="batch"),
])
def test_encoder_variants_round_trip(cfg):
    E = Encoder(cfg, seed=5).eval()
    E2 = load_bicyclegan_encoder(dict(E.state_dict()))
    assert E2.cfg == cfg
    x = torch.rand(2, cfg.input_nc, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        out, out2 = E(x), E2(x)
    for a, b in zip(out if cfg.vae_like else [out], out2 if cfg.vae_like else [out2]):
        assert a.shape == (2, cfg.nz)
        torch.testing.assert_close(b, a, rtol=0, atol=0)


@pytest.mark.parametrize("cfg", [
    MultiscaleDiscriminatorConfig(input_nc=6, ndf=(4, 2, 1), n_layers=2, norm="batch"),
    MultiscaleDiscriminatorConfig(input_nc=3, ndf=(4,), n_layers=3, norm="none"),
    MultiscaleDiscriminatorConfig(input_nc=3, ndf=(4, 2), n_layers=1, norm="instance"),
])
def test_discriminator_variants_round_trip(cfg):
    D = MultiscaleDiscriminator(cfg, seed=7).eval()
    D2 = load_bicyclegan_discriminator({f"module.{k}": v for k, v in D.state_dict().items()})
    assert D2.cfg == cfg
    x = torch.rand(2, cfg.input_nc, 64, 64)
    with torch.no_grad():
        out, out2 = D(x), D2(x)
    assert [tuple(o.shape[2:]) for o in out] == D.output_sizes(64, 64)
    for a, b in zip(out, out2):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_dropout_acts_in_train_mode_only():
    cfg = UnetConfig(input_nc=1, output_nc=3, nz=2, ngf=2, num_downs=7, use_dropout=True)
    G = UnetGenerator(cfg, seed=1)
    plain = UnetGenerator(UnetConfig(input_nc=1, output_nc=3, nz=2, ngf=2, num_downs=7), seed=1)
    assert list(G.state_dict()) == list(plain.state_dict())
    x, z = torch.rand(1, 1, 128, 128), torch.randn(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(G.eval()(x, z), plain.eval()(x, z), rtol=0, atol=0)
        G.train()
        a = G(x, z)
        b = G(x, z)
    assert not torch.equal(a, b)


# --- file handling ----------------------------------------------------------------------------------------------

def test_module_prefix_and_legacy_instance_norm_keys(fx):
    sd = dict(fx["checkpoint"]["G"])
    G = load_bicyclegan_generator(sd, options=fx["config"])
    norms = [name for name, m in G.named_modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert norms
    legacy = {f"module.{k}": v for k, v in sd.items()}
    for name in norms:
        c = dict(G.named_modules())[name].num_features
        legacy[f"module.{name}.running_mean"] = torch.zeros(c)
        legacy[f"module.{name}.running_var"] = torch.ones(c)
    G2 = load_bicyclegan_generator(legacy, options=fx["config"])
    i, e = fixture_case(fx, "G_forward_eval")
    with torch.no_grad():
        torch.testing.assert_close(G2(i["A"], i["z"]), e["out"], **TOL)
    with pytest.raises(ModelFormatError, match="unexpected keys"):  # with no norm the stats belong nowhere
        load_bicyclegan_generator(legacy, nl="relu", norm="none", use_dropout=False)


def test_mismatched_files_are_refused(fx, released):
    with pytest.raises(ModelFormatError, match="not a BicycleGAN U-Net generator"):
        load_bicyclegan_generator(released / "latest_net_E.pth")
    with pytest.raises(ModelFormatError, match="not a BicycleGAN discriminator"):
        load_bicyclegan_discriminator(released / "latest_net_G.pth")
    sd = dict(fx["checkpoint"]["G"])
    del sd["model.submodule.up.1.bias"]
    with pytest.raises(ModelFormatError, match=r"missing keys 'model\.submodule\.up\.1\.bias'"):
        load_bicyclegan_generator(sd, options=fx["config"])
    sd = dict(fx["checkpoint"]["E"])
    sd["conv.2.conv.2.weight"] = torch.zeros(16, 16, 1, 1)
    with pytest.raises(ModelFormatError, match="wrong shapes 'conv.2.conv.2.weight"):
        load_bicyclegan_encoder(sd)
    with pytest.raises(ModelFormatError, match="pass nz="):
        load_bicyclegan_generator(UnetGenerator(UnetConfig(num_downs=5, ngf=2, where_add="input"),
                                                seed=0).state_dict(), nl="relu", use_dropout=False)
    with pytest.raises(ModelFormatError, match="unknown architecture arguments"):
        load_bicyclegan_generator(fx["checkpoint"]["G"], depth=3)
    other_E = Encoder(BicycleEncoderConfig(nz=4, nef=4, n_layers=4), seed=0).state_dict()
    with pytest.raises(ModelFormatError, match="different models"):
        load_bicyclegan({"G": fx["checkpoint"]["G"], "E": other_E}, nl="relu", norm="instance", use_dropout=False)


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(ModelFormatError, match="no such file"):
        load_bicyclegan_generator(tmp_path / "latest_net_G.pth")
    (tmp_path / "latest_net_G.pth").write_bytes(b"not a model")
    with pytest.raises(ModelFormatError):
        load_bicyclegan_generator(tmp_path / "latest_net_G.pth")
    with pytest.raises(ModelFormatError, match="no such file"):
        load_bicyclegan(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFormatError, match="no latest_net_G.pth"):
        load_bicyclegan(empty)


def test_project_format_round_trip(fx, nets, tmp_path):
    path = tmp_path / "bicyclegan.pt"
    torch.save(bicyclegan_checkpoint(nets, extras={"data": "synth:edges->photo"}), path)
    back = load_bicyclegan(path)
    assert set(back) == {"G", "E", "D", "D2"}
    assert all(back[n].cfg == nets[n].cfg for n in back)
    i, e = fixture_case(fx, "test_encoded")
    torch.testing.assert_close(translate(back["G"], i["A"], encode(back["E"], i["B"])), e["fake"], **TOL)
    assert load_bicyclegan_encoder(path).cfg == nets["E"].cfg
    broken = torch.load(path, weights_only=True)
    broken["format_version"] = 99
    with pytest.raises(ModelFormatError, match="version 99"):
        load_bicyclegan(broken)


def test_input_sizes_the_networks_cannot_take(nets):
    G, E, D = nets["G"], nets["E"], nets["D"]
    with pytest.raises(ValueError, match="multiples of 128"):
        G(torch.zeros(1, 1, 96, 128), torch.zeros(1, 8))
    with pytest.raises(ValueError, match=r"z \[1, 8\]"):
        G(torch.zeros(1, 1, 128, 128), torch.zeros(1, 7))
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        G(torch.zeros(1, 3, 128, 128), torch.zeros(1, 8))
    with pytest.raises(ValueError, match="takes 128x128"):
        E(torch.zeros(1, 3, 256, 256))
    with pytest.raises(ValueError, match="too small"):
        D(torch.zeros(1, 3, 16, 16))
    with torch.no_grad():
        assert G(torch.zeros(1, 1, 256, 128), torch.zeros(1, 8)).shape == (1, 3, 256, 128)  # multiples work


# --- inference helpers ------------------------------------------------------------------------------------------

def test_sample_codes_are_seeded():
    a = sample_codes(5, 8, seed=11)
    assert a.shape == (5, 8) and a.dtype == torch.float32
    torch.testing.assert_close(sample_codes(5, 8, seed=11), a, rtol=0, atol=0)
    assert not torch.equal(sample_codes(5, 8, seed=12), a)
    torch.testing.assert_close(sample_codes(2, 8, seed=11), a[:2], rtol=0, atol=0)


def test_slerp():
    z0, z1 = sample_codes(2, 8, seed=0)
    path = slerp(z0, z1, torch.linspace(0, 1, 5))
    assert path.shape == (5, 8)
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)
    u0, u1 = z0 / z0.norm(), z1 / z1.norm()
    mid = slerp(u0, u1, 0.5)
    torch.testing.assert_close(mid.norm(), torch.tensor(1.0))  # stays on the sphere
    torch.testing.assert_close((mid * u0).sum(), (mid * u1).sum())  # equal angles to both ends
    torch.testing.assert_close(slerp(z0, 2 * z0, 0.5), 1.5 * z0)  # parallel: linear
    assert slerp(torch.stack([z0, z1]), torch.stack([z1, z0]), [0.0, 0.3, 1.0]).shape == (3, 2, 8)


def test_translate_broadcasts_one_image_over_codes(fx, nets):
    i, _ = fixture_case(fx, "G_forward_eval")
    G = nets["G"]
    z = sample_codes(3, 8, seed=4)
    out = translate(G, i["A"][0], z)
    assert out.shape == (3, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(out[1:2], G(i["A"][:1], z[1:2]), **TOL)
        torch.testing.assert_close(translate(G, i["A"], z[0]), G(i["A"], z[:1].expand(2, -1)), **TOL)
    with pytest.raises(ValueError, match="2 images and 3 codes"):
        translate(G, i["A"], z)
