"""The loader on every file layout users have, and its refusals: rosinality variants, NVIDIA state dicts,
the project's own format, configurations unlike the fixtures, and bad files."""
from __future__ import annotations

import argparse
import re

import pytest
import torch

from engine import Generator, GeneratorConfig, ModelFormatError, inspect_model, load_discriminator, load_generator
from engine.convert.nvlabs import generator_to_nvlabs
from engine.files.checkpoints import save_generator
from engine.models.stylegan2 import Discriminator, DiscriminatorConfig


@pytest.fixture(scope="module")
def ros_fx(reference_dir):
    return torch.load(reference_dir / "stylegan2" / "rosinality_s32.pt", weights_only=True)


def _z(fx):
    return fx["cases"]["plain"]["inputs"]["z"]


@torch.no_grad()
def _render(G, z):
    return G(z, noise_mode="const")


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Give every parameter non-trivial values (biases, noise strengths) so mistakes show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("bias", "noise_strength")):
                p.copy_(0.2 * torch.randn(p.shape, generator=g) + (1.0 if "affine" in name else 0.0))


def _tiny_generator(**overrides) -> Generator:
    cfg = dict(img_resolution=16, channels=(16, 12, 8), z_dim=24, w_dim=20, mapping_layers=3)
    cfg.update(overrides)
    G = Generator(GeneratorConfig(**cfg), seed=3).eval()
    _randomise(G, 4)
    return G


# ---- rosinality layouts (FACTS §15) --------------------------------------------------------------------------

def test_train_py_layout_with_args_namespace(ros_fx, tmp_path):
    ck = ros_fx["checkpoint"]
    args = argparse.Namespace(size=32, latent=64, n_mlp=8, channel_multiplier=2, arch="stylegan2", lr=0.002)
    train_ck = {"g": ck["g_ema"], "d": ck["d"], "g_ema": ck["g_ema"], "g_optim": {"state": {}, "param_groups": []},
                "d_optim": {"state": {}, "param_groups": []}, "args": args, "ada_aug_p": 0.0}
    path = tmp_path / "train.pt"
    torch.save(train_ck, path)
    G = load_generator(path)
    assert "train.py" in G.model_info.description
    # No latent_avg in such files: w_avg is computed, reproducibly, near the mean of mapped z.
    G2 = load_generator(path)
    torch.testing.assert_close(G.w_avg, G2.w_avg, rtol=0, atol=0)
    torch.testing.assert_close(G.w_avg, ck["latent_avg"], rtol=0, atol=0.25)
    with pytest.raises(ModelFormatError, match="size=64"):
        bad = dict(train_ck, args=argparse.Namespace(size=64, latent=64, n_mlp=8))
        torch.save(bad, tmp_path / "bad.pt")
        load_generator(tmp_path / "bad.pt")


def test_swagan_args_refused(ros_fx, tmp_path):
    ck = dict(ros_fx["checkpoint"], args=argparse.Namespace(size=32, latent=64, n_mlp=8, arch="swagan"))
    torch.save(ck, tmp_path / "swagan.pt")
    with pytest.raises(ModelFormatError, match="swagan"):
        load_generator(tmp_path / "swagan.pt")


def test_swagan_weights_refused(ros_fx):
    g = dict(ros_fx["checkpoint"]["g_ema"])
    g["to_rgbs.0.iwt.ll"] = torch.ones(1, 1, 2, 2)
    with pytest.raises(ModelFormatError, match="SWAGAN"):
        load_generator({"g_ema": g})


def test_released_550000_layout_without_noise_latent_avg_or_kernels(ros_fx, tmp_path):
    """The released 256 model: no noises.*, no latent_avg; circulating copies also lack the blur kernels."""
    ck = ros_fx["checkpoint"]
    g = {k: v for k, v in ck["g_ema"].items() if not k.startswith("noises.") and not k.endswith("kernel")}
    path = tmp_path / "550000.pt"
    torch.save({"g": g, "d": ck["d"], "g_ema": g, "g_optim": {}, "d_optim": {}}, path)
    G = load_generator(path)
    notes = " ".join(G.model_info.notes)
    assert "noise" in notes and "w_avg" in notes
    z = _z(ros_fx)
    # Explicit noise still reproduces the reference exactly; const noise is fixed and seeded.
    case = ros_fx["cases"]["plain"]
    with torch.no_grad():
        img = G.synthesis(G.mapping(z), noise=case["inputs"]["noise"])
    torch.testing.assert_close(img, case["expected"]["image"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(_render(G, z), _render(load_generator(path), z), rtol=0, atol=0)


def test_only_g_in_file_is_used_with_a_note(ros_fx):
    ck = ros_fx["checkpoint"]
    G = load_generator({"g": ck["g_ema"], "latent_avg": ck["latent_avg"]})
    assert any("'g'" in n for n in G.model_info.notes)


def test_unknown_key_is_refused(ros_fx):
    g = dict(ros_fx["checkpoint"]["g_ema"])
    g["convs.0.mystery.weight"] = torch.zeros(3)
    with pytest.raises(ModelFormatError, match="mystery"):
        load_generator({"g_ema": g})


def test_wrong_shape_is_refused(ros_fx):
    g = dict(ros_fx["checkpoint"]["g_ema"])
    g["convs.1.activate.bias"] = torch.zeros(5)
    with pytest.raises(ModelFormatError, match="shape"):
        load_generator({"g_ema": g})


def test_discriminator_missing_is_reported(ros_fx):
    with pytest.raises(ModelFormatError, match="no discriminator"):
        load_discriminator({"g_ema": ros_fx["checkpoint"]["g_ema"]})


# ---- NVIDIA state dicts and kwargs --------------------------------------------------------------------------

def test_nvlabs_stylegan3_generator_refused():
    sd = {"mapping.fc0.weight": torch.zeros(4, 4), "synthesis.input.affine.weight": torch.zeros(4, 4),
          "synthesis.L0_36_512.weight": torch.zeros(1)}
    with pytest.raises(ModelFormatError, match="StyleGAN3"):
        load_generator({"G_ema": sd})


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(z_dim=32, w_dim=20, mapping_features=28, mapping_layers=2),
    dict(img_resolution=32, channels=(16, 16, 12, 8), conv_clamp=0.5, num_fp16_res=2),
    dict(mapping_layers=1, img_channels=1),
])
@torch.no_grad()
def test_other_configurations_round_trip_through_nvlabs_layout(overrides):
    G = _tiny_generator(**overrides)
    sd, kwargs = generator_to_nvlabs(G.cfg, G.state_dict())
    for source in ({"G_ema": sd, "init_kwargs": kwargs}, {"G_ema": sd}):
        G2 = load_generator(source)
        z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))
        if "init_kwargs" in source:
            assert G2.cfg == G.cfg
        else:
            assert G2.cfg.channels == G.cfg.channels and G2.cfg.z_dim == G.cfg.z_dim
        if G2.cfg.conv_clamp == G.cfg.conv_clamp:
            torch.testing.assert_close(_render(G2, z), _render(G, z), rtol=0, atol=0)


@torch.no_grad()
def test_conv_clamp_limits_activations():
    G = _tiny_generator(conv_clamp=0.05)
    img = G(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)), noise_mode="const")
    # Every ToRGB output is clamped and the skip sums 3 upsampled levels: the image is bounded accordingly.
    assert img.abs().max() <= 0.05 * 3 * 1.0001
    unclamped = _tiny_generator()
    z = torch.randn(2, 24, generator=torch.Generator().manual_seed(1))
    assert unclamped(z, noise_mode="const").abs().max() > 0.2


def test_init_kwargs_disagreeing_with_weights_refused():
    G = _tiny_generator()
    sd, kwargs = generator_to_nvlabs(G.cfg, G.state_dict())
    with pytest.raises(ModelFormatError, match="z_dim"):
        load_generator({"G_ema": sd, "init_kwargs": dict(kwargs, z_dim=99)})
    with pytest.raises(ModelFormatError, match="conditional"):
        load_generator({"G_ema": sd, "init_kwargs": dict(kwargs, c_dim=10)})
    with pytest.raises(ModelFormatError, match="unknown constructor"):
        load_generator({"G_ema": sd, "init_kwargs": dict(kwargs, teleport=True)})
    with pytest.raises(ModelFormatError, match="architecture"):
        load_generator({"G_ema": sd, "init_kwargs": dict(kwargs, synthesis_kwargs={"architecture": "resnet"})})


# ---- the project's own format ----------------------------------------------------------------------------

@torch.no_grad()
def test_own_format_round_trip_bit_exact(tmp_path):
    G = _tiny_generator(z_dim=32, mapping_features=28)
    G.w_avg = torch.linspace(-1, 1, G.w_dim)
    D = Discriminator(DiscriminatorConfig(img_resolution=16, channels=(16, 12, 8), mbstd_group_size=2))
    _randomise(D, 5)
    path = tmp_path / "model.pt"
    save_generator(path, G, D=D, extras={"note": "test"})
    G2, D2 = load_generator(path), load_discriminator(path)
    assert G2.cfg == G.cfg and D2.cfg == D.cfg
    assert G2.model_info.format == "face-editor" and len(G2.model_info.sha256) == 64
    torch.testing.assert_close(G2.w_avg, G.w_avg, rtol=0, atol=0)
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(_render(G2, z), _render(G, z), rtol=0, atol=0)
    img = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(D2(img), D(img), rtol=0, atol=0)
    assert not list(tmp_path.glob(".*.tmp")), "atomic save left a temporary file"


def test_own_format_bad_arch_and_version(tmp_path):
    G = _tiny_generator()
    from engine.files.checkpoints import generator_checkpoint

    ck = generator_checkpoint(G)
    with pytest.raises(ModelFormatError, match="version"):
        load_generator(dict(ck, format_version=99))
    with pytest.raises(ModelFormatError, match="invalid architecture: unknown fields warp_drive"):
        load_generator(dict(ck, arch=dict(ck["arch"], warp_drive=1)))
    with pytest.raises(ModelFormatError, match="resolution"):
        load_generator(dict(ck, arch=dict(ck["arch"], img_resolution=20)))


def test_rosinality_to_own_format_keeps_the_image(ros_fx, tmp_path):
    G = load_generator({k: v for k, v in ros_fx["checkpoint"].items()})
    save_generator(tmp_path / "converted.pt", G)
    G2 = load_generator(tmp_path / "converted.pt")
    z = _z(ros_fx)
    torch.testing.assert_close(_render(G2, z), _render(G, z), rtol=0, atol=0)


# ---- bad files ----------------------------------------------------------------------------------------------

def test_bad_files_give_clear_errors(ros_fx, tmp_path):
    cases = {}
    (tmp_path / "empty.pt").write_bytes(b"")
    cases["empty.pt"] = "empty"
    (tmp_path / "random.bin").write_bytes(bytes(range(256)) * 10)
    cases["random.bin"] = "not a model file"
    full = tmp_path / "full.pt"
    torch.save(ros_fx["checkpoint"], full)
    data = full.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    cases["truncated.pt"] = "damaged (truncated"
    (tmp_path / "text.pkl").write_text("hello")
    cases["text.pkl"] = "not a model file"
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    cases["other.pt"] = "no StyleGAN2 generator"
    for name, message in cases.items():
        with pytest.raises(ModelFormatError, match=re.escape(message)):
            load_generator(tmp_path / name)
    with pytest.raises(ModelFormatError, match="no such file"):
        load_generator(tmp_path / "missing.pt")
    with pytest.raises(ModelFormatError, match="folder"):
        load_generator(tmp_path)
    with pytest.raises(ModelFormatError, match="list"):
        load_generator([1, 2])


def test_torch_file_with_foreign_objects_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"g_ema": {}, "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelFormatError, match="refusing"):
        load_generator(tmp_path / "evil.pt")


def test_inspect_reports_format_and_architecture(ros_fx, tmp_path):
    torch.save(ros_fx["checkpoint"], tmp_path / "ck.pt")
    info = inspect_model(tmp_path / "ck.pt")
    assert info["format"] == "rosinality" and info["num_ws"] == 8
    assert info["generator"]["img_resolution"] == 32 and info["discriminator"]["img_resolution"] == 32


def test_refusals_are_sentences_without_python_class_names_or_byte_reprs(tmp_path):
    """What a user reads when a model file cannot be opened (the worker's ErrorReport): plain words only."""
    import io
    import pickle

    from engine.errors import ErrorReport

    def saved(obj) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    files = {
        "page.pkl": b"<html><body>404</body></html>",
        "cut.pkl": pickle.dumps({"G_ema": 1})[:10],
        "badop.pkl": b"\x80\x04\xff\xff\xff",
        "list.pt": saved([1, 2, 3]),
        "text.pt": saved("hello"),
        "object.pt": saved({"a": __import__("fractions").Fraction(1, 2)}),
        "zip.pt": saved({"w": torch.zeros(4)})[:200],
        "eval.pkl": b"\x80\x02cbuiltins\neval\nq\x00X\x03\x00\x00\x001+1q\x01\x85q\x02Rq\x03.",
    }
    python = re.compile(r"\b[A-Z]\w*(Error|Exception)\b|\bb'|\bb\"|\[Errno|<class|Traceback|object at 0x|\bstr\b")
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelFormatError) as info:
            load_generator(tmp_path / name)
        message = ErrorReport.from_exception(info.value).message
        assert not python.search(message), message
        assert name in message and message.endswith((".", ")"))
