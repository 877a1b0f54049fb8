"""Half precision: float16 / bfloat16 generators through the public loader against float32 and the shared fixtures,
float64, the refusal of a precision that would show, and the choice of precision per device (CUDA mocked).

Fixture tolerances come from measurement (rosinality_s32 / nvlabs_s32, CPU): the largest |image - expected| over
every image case, relative to the case's largest |expected|, was 1.7e-3 / 2.1e-3 in float16 (1.8 and 2.2 of its
machine epsilons) and 1.2e-2 / 1.4e-2 in bfloat16 (1.5 and 1.8 epsilons); the tests allow 4 epsilons. float64 is
held to the fixtures' own float32 tolerance (measured 8.0e-6 / 5.2e-6, as FACTS.md reports for the reference code
run in float64).
"""
from __future__ import annotations

import pytest
import torch

from engine import PrecisionError, load_generator
from engine.files.checkpoints import save_generator
from engine.models.precision import PRECISIONS, measure_precision, parse_precision, precision_dtype
from engine.models.stylegan2 import Generator, GeneratorConfig
from tests.engine.test_stylegan2_fixtures import IMAGE_TOL, LATENT_TOL, _run_nvlabs, _run_rosinality

EPSILONS = 4  # allowed error, in machine epsilons of the reduced dtype, relative to the image's largest magnitude
REDUCED = (torch.float16, torch.bfloat16)


def _sources(reference_dir):
    """(name, what a user's file holds, the fixture, its case runner) for both fixture networks."""
    out = []
    for name, run in (("rosinality_s32", _run_rosinality), ("nvlabs_s32", _run_nvlabs)):
        fx = torch.load(reference_dir / "stylegan2" / f"{name}.pt", weights_only=True)
        ck = fx["checkpoint"]
        source = ck if fx["format"] == "rosinality" else {"G_ema": ck["G_ema"],
                                                         "init_kwargs": fx["config"]["G_init_kwargs"]}
        out.append((name, source, fx, run))
    return out


@pytest.fixture(scope="module")
def fixtures(reference_dir, tmp_path_factory):
    """Each fixture network written to disk as a user's file holds it: (name, path, fixture, runner)."""
    out = []
    for name, source, fx, run in _sources(reference_dir):
        path = tmp_path_factory.mktemp(name) / f"{name}.pt"
        torch.save(source, path)
        out.append((name, path, fx, run))
    return out


def _image_cases(fx):
    return [(n, c) for n, c in fx["cases"].items() if "image" in c["expected"]]


@pytest.mark.parametrize("dtype", REDUCED, ids=["float16", "bfloat16"])
@torch.no_grad()
def test_reduced_precision_matches_the_fixtures(fixtures, dtype):
    eps = torch.finfo(dtype).eps
    for name, path, fx, run in fixtures:
        G = load_generator(path, dtype=dtype)
        assert G.precision == dtype and G.w_avg.dtype == torch.float32
        assert G.precision_report is not None and not G.precision_report.visible
        worst = 0.0
        for case_name, case in _image_cases(fx):
            out = run(G, None, case)
            expected = case["expected"]["image"]
            assert out["image"].dtype == torch.float32, "the skip image accumulates in float32"
            err = float((out["image"] - expected).abs().max() / expected.abs().max())
            worst = max(worst, err)
            assert err <= EPSILONS * eps, f"{name} {case_name}: {err:.3g} of the image range at {dtype}"
            for key in ("ws", "latent"):  # the mapping stays float32: its outputs keep the float32 tolerance
                if key in case["expected"]:
                    torch.testing.assert_close(out[key], case["expected"][key], **LATENT_TOL)
        assert worst > eps / 8, f"{name}: an error of {worst:.2g} at {dtype} is too small: did anything run in it?"


@torch.no_grad()
def test_float64_matches_the_fixtures(fixtures):
    for name, path, fx, run in fixtures:
        G = load_generator(path, dtype=torch.float64)
        assert G.precision == torch.float64 and G.w_avg.dtype == torch.float64 and G.precision_report is None
        for _, case in _image_cases(fx):
            out = run(G, None, case)
            assert out["image"].dtype == torch.float64
            torch.testing.assert_close(out["image"].float(), case["expected"]["image"], **IMAGE_TOL)


@torch.no_grad()
def test_reduced_precision_report_against_float32(fixtures):
    """The loader's measurement is the one ``measure_precision`` gives for the same weights: 8-bit images within a
    level of 255 on average, and float16 closer than bfloat16 (3 more mantissa bits)."""
    for name, path, _, _ in fixtures:
        reference = load_generator(path)
        reports = {}
        for dtype in REDUCED:
            G = load_generator(path, dtype=dtype)
            again = measure_precision(reference, G)
            assert again == G.precision_report
            assert again.finite and 0 < again.mean_levels <= 1.0, f"{name}: {again.summary()}"
            reports[dtype] = again
        assert reports[torch.float16].mean_levels < reports[torch.bfloat16].mean_levels


def _overflowing_file(tmp_path):
    """A small generator whose last ToRGB bias (1e5) is past float16's largest value (65504): finite in float32
    (the image saturates) and bfloat16, infinite in float16."""
    cfg = GeneratorConfig(img_resolution=32, channels=(16, 16, 12, 8), z_dim=12, w_dim=10, mapping_layers=2)
    G = Generator(cfg, seed=3)
    top = G.synthesis.blocks()[-1]
    with torch.no_grad():
        top.torgb.bias[0] = 1e5
    path = tmp_path / "overflow.pt"
    save_generator(path, G)
    return path


def test_a_precision_that_overflows_is_refused(tmp_path):
    path = _overflowing_file(tmp_path)
    with pytest.raises(PrecisionError) as err:
        load_generator(path, dtype=torch.float16)
    message = str(err.value)
    assert "float16 would change this model's images visibly" in message and "overflows" in message
    assert "Use bfloat16" in message and "float32" in message, "the refusal names what to use instead"
    G = load_generator(path, dtype=torch.bfloat16)  # its range holds 1e5: kept, and measured faithful
    assert not G.precision_report.visible and G.precision_report.finite


def test_a_visible_rounding_error_is_refused_with_the_figures(tmp_path):
    """Without an overflow: two ToRGB biases of +200 and -200 cancel in the float32 skip image, but the top one's
    output is rounded in bfloat16 first, whose values near 200 are 1 apart (127 levels of 255). The message gives
    the figures."""
    cfg = GeneratorConfig(img_resolution=32, channels=(16, 16, 12, 8), z_dim=12, w_dim=10, mapping_layers=2)
    G = Generator(cfg, seed=5)
    top, prev = G.synthesis.blocks()[-1], G.synthesis.blocks()[-2]
    with torch.no_grad():
        top.torgb.bias.fill_(200.0)
        prev.torgb.bias.fill_(-200.0)
    path = tmp_path / "rounding.pt"
    save_generator(path, G)
    with pytest.raises(PrecisionError) as err:
        load_generator(path, dtype=torch.bfloat16)
    assert "levels of 255 on average" in str(err.value) and "PSNR" in str(err.value)


def test_an_unsupported_dtype_is_refused(fixtures):
    with pytest.raises(PrecisionError, match="float32, float64, float16 or bfloat16"):
        load_generator(fixtures[0][1], dtype=torch.int8)


def test_precision_names():
    assert PRECISIONS[0] == "auto"
    assert parse_precision(None) == parse_precision("") == parse_precision(" Auto ") == "auto"
    with pytest.raises(PrecisionError, match="Choose one of: auto, float32, float16, bfloat16"):
        parse_precision("float8")
    assert precision_dtype("auto", "cpu") == torch.float32
    assert precision_dtype("auto", torch.device("cuda", 1)) == torch.float16
    assert precision_dtype("bfloat16", "cpu") == torch.bfloat16
    assert precision_dtype("float32", "cuda") == torch.float32
