"""The e4e encoder: every case of the shared fixture (``shared/reference/e4e``) through ``load_e4e`` on a file written
as e4e's training code writes it, the full-size architecture against the published file's key manifest, files with
a decoder, pairing with a separately opened generator, encoding to W+, preprocessing, and refused files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.convert import rosinality
from engine.convert.e4e import check_weights, encoder_config
from engine.errors import ModelFormatError
from engine.files.e4e import load_e4e
from engine.files.loading import load_generator
from engine.models.e4e import E4EConfig, Encoder4Editing, encode, prepare_photos
from engine.models.stylegan2 import Generator, GeneratorConfig

# README tiers; 2x the largest spread over native/avx2/default kernels x 1/2 threads (2.4e-7 latents, 7.2e-7 c2) fits
CODE_TOL = dict(rtol=1e-5, atol=1e-6)
FEATURE_TOL = dict(rtol=1e-5, atol=1e-5)
CASES = ("encode", "progressive_stage_0", "progressive_stage_2", "progressive_stage_5", "progressive_stage_8",
         "latents_with_avg", "features_one_image", "ir_encode", "ir_progressive_stage_6")


@pytest.fixture(scope="module")
def fixture(reference_dir):
    return torch.load(reference_dir / "e4e" / "e4e_tiny.pt", weights_only=True)


@pytest.fixture(scope="module")
def models(fixture, tmp_path_factory):
    """variant -> the E4E the public loader makes of the variant's checkpoint written to disk."""
    folder = tmp_path_factory.mktemp("e4e")
    out = {}
    for variant, ck in (("ir_se", fixture["checkpoint"]), ("ir", fixture["variants"]["ir"]["checkpoint"])):
        torch.save(ck, folder / f"{variant}.pt")
        out[variant] = load_e4e(folder / f"{variant}.pt")
    return out


def _run(e4e, case) -> dict:
    x, stage = case["inputs"]["x"], case["kwargs"].get("stage")
    with torch.no_grad():
        if "latents" in case["expected"]:
            return {"latents": encode(e4e, x), "codes": e4e.encoder(x)}
        if "c1" in case["expected"]:
            f = e4e.encoder.features(x)
            return {"stem_mean_hw": f.stem.mean((2, 3)), "c1": f.c1, "c2": f.c2, "c3": f.c3, "p2": f.p2,
                    "p1": f.p1, "style_outputs": f.styles, "codes": f.codes}
        return {"codes": e4e.encoder(x, stage=stage)}


def test_the_case_list_is_complete(fixture):
    assert sorted(fixture["cases"]) == sorted(CASES)


@pytest.mark.parametrize("name", CASES)
def test_fixture_case(fixture, models, name):
    case = fixture["cases"][name]
    got = _run(models[case["variant"]], case)
    assert set(case["expected"]) <= set(got)
    for key, value in case["expected"].items():
        tol = CODE_TOL if key in ("codes", "latents", "style_outputs") else FEATURE_TOL
        torch.testing.assert_close(got[key], value, **tol, msg=lambda m, k=key: f"{name} {k}: {m}")


def test_the_inferred_architecture_is_the_fixtures(fixture, models):
    for variant, cfg in (("ir_se", fixture["config"]), ("ir", fixture["variants"]["ir"]["config"])):
        ours = models[variant].cfg
        widths = cfg["widths"]
        assert (ours.mode, ours.n_styles, ours.w_dim, ours.input_size) == (cfg["mode"], cfg["n_styles"],
                                                                            cfg["w_dim"], cfg["image_size"])
        assert ours.stem_channels == widths["input_layer"]
        assert ours.depths == tuple(widths[f"block{i}"] for i in range(1, 5))
        assert ours.units == tuple(cfg["units_per_block"])
        assert (ours.coarse_ind, ours.middle_ind) == (cfg["coarse_ind"], cfg["middle_ind"])
        assert ours.taps == tuple(cfg["feature_taps"][k] for k in ("c1", "c2", "c3"))
        assert ours.se_reduction == (cfg["se_reduction"] if cfg["mode"] == "ir_se" else None)


def test_the_loaded_encoder_is_in_eval_mode_with_the_files_running_stats(fixture, models):
    enc = models["ir_se"].encoder
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    sd = fixture["checkpoint"]["state_dict"]
    key = "input_layer.1.running_var"
    assert torch.equal(enc.state_dict()[key], sd[f"encoder.{key}"])


def test_the_stage_keeps_the_rows_beyond_it_at_w0(fixture, models):
    x = fixture["cases"]["encode"]["inputs"]["x"]
    with torch.no_grad():
        codes = models["ir_se"].encoder(x, stage=5)
    assert torch.equal(codes[:, 6:], codes[:, :1].expand(-1, codes.shape[1] - 6, -1))
    assert not torch.equal(codes[:, 5], codes[:, 0])


# --- W+ latents, the average and pairing with a generator -------------------------------------------------------

def _generator(cfg: E4EConfig, *, seed: int = 0) -> Generator:
    """A small random generator with the encoder's W+ shape (its resolution gives n_styles rows)."""
    res = 2 ** ((cfg.n_styles + 2) // 2)
    n_blocks = int(np.log2(res)) - 1
    return Generator(GeneratorConfig(img_resolution=res, channels=(4,) * n_blocks, z_dim=cfg.w_dim, w_dim=cfg.w_dim,
                                     mapping_layers=1), seed=seed).eval()


def test_latents_are_codes_plus_the_files_latent_avg(fixture, models):
    e4e, x = models["ir_se"], fixture["cases"]["encode"]["inputs"]["x"]
    assert e4e.average == "file" and e4e.generator is None
    torch.testing.assert_close(e4e.latent_avg, fixture["checkpoint"]["latent_avg"], rtol=0, atol=0)
    with torch.no_grad():
        assert torch.equal(encode(e4e, x), e4e.encoder(x) + e4e.latent_avg)


def test_a_file_without_latent_avg_needs_its_generators_average(fixture, models):
    e4e, x = models["ir"], fixture["cases"]["ir_encode"]["inputs"]["x"]
    assert e4e.average == "generator" and e4e.latent_avg is None
    with pytest.raises(ValueError, match="stores no average latent.*pair it with its generator"):
        encode(e4e, x)
    G = _generator(e4e.cfg)
    G.w_avg = torch.linspace(-1, 1, G.w_dim)
    paired = e4e.pair_with(G)
    assert paired.generator is G and e4e.generator is None
    with torch.no_grad():
        assert torch.equal(encode(paired, x), e4e.encoder(x) + G.w_avg)


def test_codes_are_the_latents_when_trained_without_the_average(fixture):
    ck = dict(fixture["checkpoint"], opts={**fixture["checkpoint"]["opts"], "start_from_latent_avg": False})
    e4e = load_e4e(ck)
    x = fixture["cases"]["encode"]["inputs"]["x"][:1]
    assert e4e.average == "none" and any("not added" in n for n in e4e.info.notes)
    with torch.no_grad():
        assert torch.equal(encode(e4e, x), e4e.encoder(x))


def test_pairing_a_generator_of_another_architecture_is_refused(models):
    e4e = models["ir_se"]
    other = _generator(models["ir"].cfg)  # 14 rows x 16
    with pytest.raises(ModelFormatError) as err:
        e4e.pair_with(other, name="the generator toon.pt")
    text = str(err.value)
    assert "ir_se.pt" in text and "10 rows x 32 values" in text and "toon.pt takes 14 rows x 16 values" in text
    wider = Generator(GeneratorConfig(img_resolution=64, channels=(4,) * 5, z_dim=16, w_dim=16, mapping_layers=1))
    with pytest.raises(ModelFormatError, match="takes 10 rows x 16 values"):
        e4e.pair_with(wider)
    assert e4e.pair_with(_generator(e4e.cfg)).generator.num_ws == 10


def test_encode_checks_the_image_shape(fixture, models):
    x = fixture["cases"]["encode"]["inputs"]["x"]
    with pytest.raises(ValueError, match=r"images must be \[B, 3, 256, 256\].*prepare_photos"):
        encode(models["ir_se"], x[:, :, :128, :128])


# --- preprocessing --------------------------------------------------------------------------------------------

def test_prepare_photos_normalises_uint8_rgb_to_minus_one_one(models):
    e4e = models["ir_se"]
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    x = prepare_photos(e4e, photo)
    assert x.shape == (1, 3, 256, 256) and x.dtype == torch.float32
    expected = torch.from_numpy(photo.astype(np.float32)).permute(2, 0, 1)[None] / 255 * 2 - 1
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-7)
    assert float(x[0, 0, 3, 5]) == pytest.approx(photo[3, 5, 0] / 127.5 - 1, abs=1e-7)  # channel 0 is red


def test_prepare_photos_resizes_as_torchvision_resizes_a_pil_image(models):
    e4e = models["ir_se"]
    rng = np.random.default_rng(1)
    photos = rng.integers(0, 256, (2, 300, 410, 3), dtype=np.uint8)
    x = prepare_photos(e4e, photos)
    assert x.shape == (2, 3, 256, 256)
    pil = np.asarray(Image.fromarray(photos[1]).resize((256, 256), Image.BILINEAR))  # Resize((256, 256)) on PIL
    torch.testing.assert_close(x[1], torch.from_numpy(pil.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1,
                               rtol=0, atol=1e-6)
    floats = prepare_photos(e4e, torch.zeros(1, 3, 512, 512))
    assert floats.shape == (1, 3, 256, 256)
    with pytest.raises(ValueError, match="uint8 RGB"):
        prepare_photos(e4e, photos.astype(np.float32))


def test_car_models_take_192_by_256_photos(fixture):
    ck = dict(fixture["checkpoint"], opts={**fixture["checkpoint"]["opts"], "dataset_type": "cars_encode"})
    e4e = load_e4e(ck)
    assert e4e.input_shape == (192, 256)
    x = prepare_photos(e4e, np.zeros((300, 400, 3), np.uint8))
    assert x.shape == (1, 3, 192, 256)
    with torch.no_grad():
        assert encode(e4e, x).shape == (1, 10, 32)


# --- the full-size architecture -----------------------------------------------------------------------------

def _manifest(reference_dir) -> dict:
    return json.loads((reference_dir / "e4e" / "e4e_ffhq_encode_manifest.json").read_text())


def test_the_full_size_encoder_matches_the_published_files_manifest(reference_dir):
    m = _manifest(reference_dir)
    entries = [(k, tuple(shape), dtype) for k, shape, dtype in m["state_dict"] if k.startswith("encoder.")]
    sd = {k[len("encoder."):]: torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
          for k, shape, dtype in entries}
    cfg, _ = encoder_config(sd, {"stylegan_size": 1024, "encoder_type": "Encoder4Editing"}, what="manifest")
    assert cfg == E4EConfig(mode="ir_se", stem_channels=64, depths=(64, 128, 256, 512), units=(3, 4, 14, 3),
                            se_reduction=16, n_styles=18, w_dim=512, coarse_ind=3, middle_ind=7, input_size=256)
    assert cfg.taps == (6, 20, 23)  # FACTS §2
    with torch.device("meta"):
        net = Encoder4Editing(cfg)
    ours = [(f"encoder.{k}", tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in net.state_dict().items()]
    assert ours == entries  # every key, shape and dtype, in the file's order
    assert len(ours) == m["n_encoder"]
    assert sum(p.numel() for p in net.parameters()) == m["n_encoder_params"]
    check_weights(net, sd, what="manifest")
    assert m["latent_avg"] == [cfg.n_styles, cfg.w_dim]


def test_the_full_size_decoder_is_a_rosinality_1024_config_f_generator(reference_dir):
    m = _manifest(reference_dir)
    decoder = {k[len("decoder."):]: shape for k, shape, _ in m["state_dict"] if k.startswith("decoder.")}
    ros = json.loads((reference_dir / "stylegan2" / "manifests" / "rosinality_ffhq1024_configf_g_ema.json").read_text())
    assert list(decoder.items()) == list(ros.items())
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    sd = {k: torch.outer(f, f) / 16 if k.endswith("kernel") else torch.empty(v, device="meta")
          for k, v in decoder.items()}
    cfg, native, _ = rosinality.generator_from_rosinality(sd, latent_avg=torch.empty(512, device="meta"))
    assert cfg.img_resolution == 1024 and cfg.channels == (512, 512, 512, 512, 512, 256, 128, 64, 32)
    assert (cfg.num_ws, cfg.w_dim, cfg.mapping_layers) == (18, 512, 8)  # the encoder's 18 x 512 W+
    assert sum(v.numel() for k, v in native.items() if not k.endswith(("noise_const", "w_avg"))) == \
        m["n_decoder_params"]


# --- files with a decoder -----------------------------------------------------------------------------------

def _tiny_encoder(n_styles: int, w_dim: int, *, seed: int = 3) -> dict:
    """encoder.* weights of a small random IR-SE encoder with the given W+ shape, BatchNorm stats not trivial."""
    cfg = E4EConfig(mode="ir_se", stem_channels=4, depths=(4, 6, 8, 10), units=(1, 2, 1, 1), se_reduction=2,
                    n_styles=n_styles, w_dim=w_dim, coarse_ind=min(3, n_styles), middle_ind=min(7, n_styles),
                    input_size=32)
    sd = Encoder4Editing(cfg, seed=seed).state_dict()
    g = torch.Generator().manual_seed(seed)
    for k, v in sd.items():
        if k.endswith("running_var"):
            v.copy_(torch.rand(v.shape, generator=g) + 0.5)
        elif k.endswith("running_mean"):
            v.copy_(torch.randn(v.shape, generator=g) * 0.1)
    return {f"encoder.{k}": v for k, v in sd.items()}


@pytest.fixture(scope="module")
def rosinality_g(reference_dir):
    fx = torch.load(reference_dir / "stylegan2" / "rosinality_s32.pt", weights_only=True)
    return fx["checkpoint"]["g_ema"], fx["checkpoint"]["latent_avg"]


def _with_decoder(g_ema: dict, latent_avg: torch.Tensor, n_styles: int) -> dict:
    w_dim = latent_avg.numel()
    sd = {**_tiny_encoder(n_styles, w_dim), **{f"decoder.{k}": v for k, v in g_ema.items()}}
    opts = {"encoder_type": "Encoder4Editing", "stylegan_size": 2 ** ((n_styles + 2) // 2),
            "start_from_latent_avg": True}
    return {"state_dict": sd, "opts": opts, "latent_avg": latent_avg.reshape(1, -1).repeat(n_styles, 1)}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_a_file_with_a_decoder_opens_as_encoder_and_generator(rosinality_g, tmp_path):
    g_ema, latent_avg = rosinality_g
    G_alone = load_generator({"g_ema": g_ema, "latent_avg": latent_avg})
    ck = _with_decoder(g_ema, latent_avg, G_alone.num_ws)
    torch.save(ck, tmp_path / "e4e_with_decoder.pt")
    e4e = load_e4e(tmp_path / "e4e_with_decoder.pt")
    G = e4e.generator
    _same_weights(G, G_alone)  # w_avg = the average latent's (equal) rows, as the rosinality file's latent_avg
    assert torch.equal(G.w_avg, latent_avg)
    assert G.model_info.format == "e4e" and G.model_info.path == str(tmp_path / "e4e_with_decoder.pt")
    assert "with its StyleGAN2 generator" in e4e.info.description and e4e.average == "file"
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        ws = encode(e4e, x)
        assert torch.equal(ws, e4e.encoder(x) + latent_avg)
        assert G.synthesis(ws).shape == (2, 3, 32, 32)


def test_a_decoder_with_distinct_average_rows_computes_its_w_avg(rosinality_g):
    g_ema, latent_avg = rosinality_g
    G_alone = load_generator({"g_ema": g_ema})  # no latent_avg: w_avg computed from mapped z
    ck = _with_decoder(g_ema, latent_avg, G_alone.num_ws)
    ck["latent_avg"] = ck["latent_avg"] + torch.arange(G_alone.num_ws, dtype=torch.float32)[:, None]
    e4e = load_e4e(ck)
    _same_weights(e4e.generator, G_alone)
    assert any("rows differ" in n for n in e4e.generator.model_info.notes)


def test_a_decoder_of_another_size_than_the_encoder_is_refused(rosinality_g):
    g_ema, latent_avg = rosinality_g
    ck = _with_decoder(g_ema, latent_avg, 10)
    with pytest.raises(ModelFormatError, match=r"the encoder makes W\+ latents of 10 rows.*its generator \(decoder"):
        load_e4e(ck)


# --- refused files -----------------------------------------------------------------------------------------

def _refused(ck, tmp_path) -> str:
    torch.save(ck, tmp_path / "bad.pt")
    with pytest.raises(ModelFormatError) as err:
        load_e4e(tmp_path / "bad.pt")
    text = str(err.value)
    assert text.startswith("bad.pt") and "Error" not in text and "Tensor" not in text
    return text


def _edited(fixture, **changes) -> dict:
    ck = fixture["checkpoint"]
    return {"state_dict": dict(ck["state_dict"]), "opts": dict(ck["opts"]), "latent_avg": ck["latent_avg"],
            **changes}


def test_files_that_are_no_e4e_checkpoint_are_refused(fixture, tmp_path):
    assert "found a list of 3 items" in _refused([1, 2, 3], tmp_path)
    assert "found a dictionary with keys g_ema" in _refused({"g_ema": {}}, tmp_path)
    assert "'state_dict' is a list" in _refused({"state_dict": [1], "opts": {}}, tmp_path)
    assert "outside encoder.* and decoder.*" in _refused(
        _edited(fixture, state_dict={**fixture["checkpoint"]["state_dict"], "latent_avg": torch.zeros(3)}), tmp_path)
    assert "no encoder.* keys" in _refused({"state_dict": {}, "opts": {}}, tmp_path)
    assert "not a dictionary" in _refused(_edited(fixture, opts=[1, 2]), tmp_path)


def test_missing_and_misshapen_weights_are_refused_naming_them(fixture, tmp_path):
    sd = dict(fixture["checkpoint"]["state_dict"])
    del sd["encoder.styles.4.linear.bias"]
    assert "missing 'encoder.styles.4.linear.bias'" in _refused(_edited(fixture, state_dict=sd), tmp_path)
    sd = dict(fixture["checkpoint"]["state_dict"])
    sd["encoder.latlayer1.weight"] = torch.zeros(48, 30, 1, 1)
    text = _refused(_edited(fixture, state_dict=sd), tmp_path)
    assert "encoder.latlayer1.weight has shape (48, 30, 1, 1)" in text and "(48, 32, 1, 1)" in text
    sd = dict(fixture["checkpoint"]["state_dict"])
    sd["encoder.body.5.res_layer.1.weight"] = "weights"
    assert "'encoder.body.5.res_layer.1.weight' is a text string, not a tensor" in _refused(
        _edited(fixture, state_dict=sd), tmp_path)
    sd = {k: v for k, v in fixture["checkpoint"]["state_dict"].items() if not k.startswith("encoder.styles.3.")}
    assert "style blocks are not numbered 0..8" in _refused(_edited(fixture, state_dict=sd), tmp_path)
    sd = {k: v for k, v in fixture["checkpoint"]["state_dict"].items() if "res_layer.5" not in k or "body.2." in k}
    assert "only some body units have squeeze-excitation" in _refused(_edited(fixture, state_dict=sd), tmp_path)
    assert "latent_avg has shape (10, 31)" in _refused(_edited(fixture, latent_avg=torch.zeros(10, 31)), tmp_path)
    assert "latent_avg is a list" in _refused(_edited(fixture, latent_avg=[0.0]), tmp_path)
    sd = dict(fixture["checkpoint"]["state_dict"])
    sd["encoder.styles.2.convs.0.bias"] = sd["encoder.styles.2.convs.0.bias"].clone()
    sd["encoder.styles.2.convs.0.bias"][1] = float("nan")
    assert "NaN or infinite values ('encoder.styles.2.convs.0.bias')" in _refused(_edited(fixture, state_dict=sd),
                                                                                  tmp_path)
    inf = fixture["checkpoint"]["latent_avg"].clone()
    inf[0, 0] = float("inf")
    assert "latent_avg holds NaN or infinite" in _refused(_edited(fixture, latent_avg=inf), tmp_path)


def test_options_that_contradict_the_weights_are_refused(fixture, tmp_path):
    opts = fixture["checkpoint"]["opts"]
    text = _refused(_edited(fixture, opts={**opts, "stylegan_size": 1024}), tmp_path)
    assert "stylegan_size 1024 (18 W+ rows), but the encoder has 10 style blocks" in text
    text = _refused(_edited(fixture, opts={**opts, "encoder_type": "GradualStyleEncoder"}), tmp_path)
    assert "encoder_type 'GradualStyleEncoder'" in text and "only e4e" in text
    assert "is not a power of two" in _refused(_edited(fixture, opts={**opts, "stylegan_size": 100}), tmp_path)


def test_files_without_options_are_read_from_the_weights_alone(fixture):
    ck = fixture["checkpoint"]
    bare = load_e4e(dict(ck["state_dict"]))  # a bare state dict, as e4e's own key reader accepts
    assert bare.cfg.n_styles == 10 and bare.average == "generator"
    assert any("no training options" in n for n in bare.info.notes)
    x = fixture["cases"]["encode"]["inputs"]["x"][:1]
    with torch.no_grad():
        assert torch.equal(bare.encoder(x), load_e4e(ck).encoder(x))
