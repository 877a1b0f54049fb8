"""Half precision: float16 / bfloat16 generators through the public loader against float32 and the shared fixtures,
float64, the refusal of a precision that would show, and the choice of precision per device (CUDA mocked).

Fixture tolerances come from measurement (rosinality_s32 / nvlabs_s32, CPU): the largest |image - expected| over
every image case, relative to the case's largest |expected|, was 1.7e-3 / 2.1e-3 in float16 (1.8 and 2.2 of its
machine epsilons) and 1.2e-2 / 1.4e-2 in bfloat16 (1.5 and 1.8 epsilons); the tests allow 4 epsilons. float64 is
held to the fixtures' own float32 tolerance (measured 8.0e-6 / 5.2e-6, as FACTS.md reports for the reference code
run in float64).
"""
from __future__ import annotations

import argparse
import copy
import json

import pytest
import torch

from engine import (
    DeviceError,
    EditState,
    InlineContext,
    ModelJob,
    ModelRef,
    PrecisionError,
    RenderJob,
    Worker,
    device_choices,
    load_generator,
    resolve_device,
)
from engine.algorithms.projection import InversionSettings, invert
from engine.convert.e4e import encoder_config
from engine.files.checkpoints import save_generator
from engine.files.loading import read_generator
from engine.models.flow import FlowConfig
from engine.models.memory import encoder_memory, flow_memory, generator_memory, loaded_memory, peak_activation_bytes
from engine.models.precision import (
    AUTO,
    PRECISIONS,
    at_precision,
    chosen_precision,
    measure_precision,
    parse_precision,
    precision_dtype,
)
from engine.models.stylegan2 import Generator, GeneratorConfig, channels_from_base
from tests.engine.test_stylegan2_fixtures import IMAGE_TOL, LATENT_TOL, _run_nvlabs, _run_rosinality
from tests.fakes import TINY_CFG

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


@pytest.fixture(scope="module")
def reduced(fixtures):
    """{(fixture name, dtype): the fixture network loaded at that reduced precision}."""
    return {(name, dtype): load_generator(path, dtype=dtype) for name, path, _, _ in fixtures for dtype in REDUCED}


def _image_cases(fx):
    return [(n, c) for n, c in fx["cases"].items() if "image" in c["expected"]]


@pytest.mark.parametrize("dtype", REDUCED, ids=["float16", "bfloat16"])
@torch.no_grad()
def test_reduced_precision_matches_the_fixtures(fixtures, reduced, dtype):
    eps = torch.finfo(dtype).eps
    for name, path, fx, run in fixtures:
        G = reduced[name, dtype]
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
def test_reduced_precision_report_against_float32(fixtures, reduced):
    """The loader's measurement is the one ``measure_precision`` gives for the same weights (bfloat16, which the
    CPU runs quickly, measured again): 8-bit images within a level of 255 on average, and float16 closer than
    bfloat16 (3 more mantissa bits)."""
    for name, path, _, _ in fixtures:
        reports = {dtype: reduced[name, dtype].precision_report for dtype in REDUCED}
        assert measure_precision(load_generator(path), reduced[name, torch.bfloat16]) == reports[torch.bfloat16]
        for report in reports.values():
            assert report.finite and 0 < report.mean_levels <= 1.0, f"{name}: {report.summary()}"
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


def _rounding_file(tmp_path):
    """Without an overflow: two ToRGB biases of +200 and -200 cancel in the float32 skip image, but the top one's
    output is rounded in bfloat16 first, whose values near 200 are 1 apart (127 levels of 255)."""
    cfg = GeneratorConfig(img_resolution=32, channels=(16, 16, 12, 8), z_dim=12, w_dim=10, mapping_layers=2)
    G = Generator(cfg, seed=5)
    top, prev = G.synthesis.blocks()[-1], G.synthesis.blocks()[-2]
    with torch.no_grad():
        top.torgb.bias.fill_(200.0)
        prev.torgb.bias.fill_(-200.0)
    path = tmp_path / "rounding.pt"
    save_generator(path, G)
    return path


def test_a_visible_rounding_error_is_refused_with_the_figures(tmp_path):
    """bfloat16 on ``_rounding_file``: refused, the message gives the figures."""
    with pytest.raises(PrecisionError) as err:
        load_generator(_rounding_file(tmp_path), dtype=torch.bfloat16)
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


# ---- memory: FFHQ-1024 with the released CNF and a full-size e4e encoder on an 8 GB GPU ---------------------------

GPU_BYTES = 8 * 10**9  # an "8 GB" card as sold (7.45 GiB)
CONFIG_F = GeneratorConfig(img_resolution=1024, channels=channels_from_base(1024, channel_base=32768, channel_max=512),
                           z_dim=512, w_dim=512, mapping_layers=8)


@pytest.fixture(scope="module")
def full_size_encoder_config(reference_dir):
    """The e4e architecture the loader infers from the published file's key manifest."""
    entries = json.loads((reference_dir / "e4e" / "e4e_ffhq_encode_manifest.json").read_text())["state_dict"]
    sd = {k.removeprefix("encoder."): torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
          for k, shape, dtype in entries if k.startswith("encoder.")}
    cfg, _ = encoder_config(sd, {"stylegan_size": 1024, "encoder_type": "Encoder4Editing"}, what="manifest")
    return cfg


@pytest.fixture(scope="module")
def side_networks(full_size_encoder_config):
    """The released CNF's edit and the e4e encode, both float32 as the engine runs them."""
    return [flow_memory(FlowConfig(), num_ws=CONFIG_F.num_ws), encoder_memory(full_size_encoder_config)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["float32", "float16"])
def test_ffhq_1024_with_the_cnf_and_the_encoder_fits_8_gb(side_networks, dtype):
    generator = generator_memory(CONFIG_F, dtype=dtype)
    parts = [generator, *side_networks]
    assert side_networks[1].parameters == 267_136_704  # the published encoder (e4e FACTS.md)
    assert all(p.activation_bytes > 0 for p in parts)
    total = loaded_memory(parts)
    assert total < GPU_BYTES, f"{total / 1e9:.2f} GB: {[p.to_dict() for p in parts]}"


def test_half_precision_halves_the_generators_activations():
    full, half = generator_memory(CONFIG_F), generator_memory(CONFIG_F, dtype=torch.float16)
    assert half.parameters == full.parameters and half.weights_bytes < full.weights_bytes
    assert 0.4 < half.activation_bytes / full.activation_bytes < 0.6
    # a 1024 px frame holds at least two [1, 32, 1024, 1024] feature maps at once
    assert full.activation_bytes >= 2 * 32 * 1024 * 1024 * 4


def test_peak_activation_bytes_counts_live_tensors():
    def run():
        a = torch.zeros(1000)  # 4000 bytes
        b = a * 2  # +4000, peak 8000
        del a
        c = b + 1  # +4000 after a's 4000 went: still 8000
        c.add_(1)  # in place: nothing
        return c.view(10, 100)  # a view: nothing

    assert peak_activation_bytes(run) == 8000


def test_config_f_runs_its_top_blocks_in_float16_on_meta():
    """The CUDA path without a GPU: the full-size generator at float16 on the meta device keeps its styles and skip
    image in float32 and runs the top blocks' convolutions in float16."""
    with torch.device("meta"):
        G = Generator(CONFIG_F).eval().requires_grad_(False)
    G.to_precision(torch.float16)
    seen = {}
    for r in CONFIG_F.resolutions:
        getattr(G.synthesis, f"b{r}").conv1.register_forward_hook(lambda m, i, o, r=r: seen.__setitem__(r, o.dtype))
    with torch.no_grad():
        img = G.synthesis(G.mapping(torch.zeros(1, 512, device="meta")), noise_mode="const")
    assert img.shape == (1, 3, 1024, 1024) and img.dtype == torch.float32
    reduced = set(G.reduced_resolutions())
    assert reduced == {128, 256, 512, 1024}  # NVIDIA's num_fp16_res = 4
    assert {r for r, d in seen.items() if d == torch.float16} == reduced
    assert all(seen[r] == torch.float32 for r in CONFIG_F.resolutions if r not in reduced)


# ---- the precision choice: the worker, its jobs, the command line, CUDA (mocked) --------------------------------

@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "g.pt"
    save_generator(path, Generator(TINY_CFG, seed=4).eval())
    return path


def _render(worker_or_ctx, state):
    if isinstance(worker_or_ctx, Worker):
        return worker_or_ctx.submit(RenderJob(state)).result(timeout=120)
    return RenderJob(state)(worker_or_ctx)


def test_the_worker_renders_at_its_precision(tiny_path):
    state = EditState(model=ModelRef(path=str(tiny_path)), seed=3)
    images = {}
    for precision in ("auto", "bfloat16"):
        w = Worker(device="cpu", precision=precision).start()
        try:
            result = _render(w, state)
            summary = w.submit(ModelJob(state.model)).result(timeout=120)
        finally:
            w.shutdown()
        expected = "float32" if precision == "auto" else precision  # auto is float32 off CUDA
        assert w.dtype_name == result.precision == summary.precision == expected
        images[precision] = result.image.astype(int)
    assert 0 < abs(images["bfloat16"] - images["auto"]).mean() < 1.0


def test_float16_is_for_gpus():
    """Named on the CPU (no fast float16 kernels there) it is refused when a model loads, saying what to use."""
    ctx = InlineContext(device=torch.device("cpu"), precision="float16")
    with pytest.raises(PrecisionError, match="float16 is for GPUs.*Use float32 or bfloat16"):
        RenderJob(EditState())(ctx)


def test_the_inline_context_and_its_model_cache_keep_one_generator_per_precision(tiny_path):
    state = EditState(model=ModelRef(path=str(tiny_path)), seed=3)
    ctx = InlineContext(device=torch.device("cpu"), precision="bfloat16")
    assert _render(ctx, state).precision == "bfloat16"
    ctx.precision = "float32"
    assert _render(ctx, state).precision == "float32" and len(ctx.models) == 2
    with pytest.raises(PrecisionError, match="Choose one of"):
        InlineContext(device=torch.device("cpu"), precision="half")
    with pytest.raises(PrecisionError, match="Choose one of"):
        Worker(precision="fp8")


def test_a_named_precision_that_would_show_is_refused_and_auto_keeps_float32(tmp_path, monkeypatch, caplog):
    """'auto' on a device where it means float16 (CUDA; here the CPU is given CUDA's rule): a model float16 would
    change falls back to float32, logged; a named precision that would show is refused; a faithful model gets
    float16."""
    monkeypatch.setitem(AUTO, "cpu", torch.float16)
    bad = read_generator(_overflowing_file(tmp_path))
    with caplog.at_level("WARNING", logger="engine.models.precision"):
        assert chosen_precision(bad, "auto", "cpu").precision == torch.float32
    assert "overflows" in caplog.text and "Running it in float32" in caplog.text
    with pytest.raises(PrecisionError, match="Use bfloat16"):
        at_precision(bad, torch.float16, device="cpu")
    with pytest.raises(PrecisionError, match="bfloat16 would change this model's images visibly"):
        chosen_precision(read_generator(_rounding_file(tmp_path)), "bfloat16", "cpu")
    good = read_generator(save_tiny(tmp_path / "good.pt"))
    assert chosen_precision(good, "auto", "cpu").precision == torch.float16


def save_tiny(path):
    save_generator(path, Generator(TINY_CFG, seed=4).eval())
    return path


def test_auto_is_float16_on_a_cuda_gpu_mocked(monkeypatch):
    """Device and precision selection for CUDA without one: torch is told there are two GPUs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_choices() == ["auto", "cpu", "cuda", "cuda:0", "cuda:1"] + (["mps"] if "mps" in device_choices()
                                                                              else [])
    device = resolve_device("auto")
    assert device.type == "cuda"
    assert precision_dtype("auto", device) == torch.float16
    assert precision_dtype("auto", resolve_device("cuda:1")) == torch.float16
    assert precision_dtype("float32", device) == torch.float32
    with pytest.raises(DeviceError, match="2 CUDA GPU"):
        resolve_device("cuda:2")
    w = Worker(device="auto", precision="auto")  # not started: its device is what start() would resolve
    w.device = resolve_device(w._device_preference)
    assert w.dtype_name == "float16"
    w.precision = "bfloat16"
    assert w.dtype_name == "bfloat16"


def test_a_command_on_cuda_turns_tf32_off_mocked(monkeypatch):
    """float32 on a GPU is float32: TF32 (10 mantissa bits, on by default for cuDNN convolutions) is turned off when
    a command opens a CUDA device."""
    from engine.cli.common import setup_compute

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        assert setup_compute(argparse.Namespace(device="cuda", threads=None)).type == "cuda"
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_auto_is_float32_without_a_gpu_mocked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    device = resolve_device("auto")
    assert device.type == "cpu" and precision_dtype("auto", device) == torch.float32
    with pytest.raises(DeviceError, match="needs a CUDA GPU"):
        resolve_device("cuda")


def test_the_commands_take_a_precision(tiny_path, tmp_path, capsys, monkeypatch):
    import main

    monkeypatch.setenv("FACE_EDITOR_LOG_DIR", str(tmp_path / "logs"))
    out = tmp_path / "out"
    assert main.main(["generate", "--model", str(tiny_path), "--seeds", "1", "--out", str(out), "--device", "cpu",
                      "--precision", "bfloat16"]) == 0
    assert "on cpu in bfloat16" in capsys.readouterr().out and (out / "seed0001.png").is_file()
    with pytest.raises(SystemExit) as e:
        main.main(["render", "--precision", "half", "x.fproj", "--out", str(tmp_path / "x.png")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "'half'" in err and "float16" in err
    for command in ("generate", "edit", "invert", "render", "translate", "attributes", "distance"):
        with pytest.raises(SystemExit):
            main.main([command, "--help"])
        assert "--precision" in capsys.readouterr().out, command


def test_a_reduced_precision_generator_is_inverted_through_its_float32_weights():
    """A photo inversion through a bfloat16 generator optimises exactly as through the same rounded weights in
    float32 (float16 gradients of a mean loss over a large image would vanish), with float32 noise maps, and leaves
    the generator as it was."""
    cfg = GeneratorConfig(img_resolution=32, channels=(32, 32, 16, 8), z_dim=32, w_dim=32, mapping_layers=2)
    G = Generator(cfg, seed=1).eval().requires_grad_(False)
    with torch.no_grad():
        target = G.synthesis(G.mapping(torch.randn(1, 32, generator=torch.Generator().manual_seed(7)))).clamp(-1, 1)
    half = copy.deepcopy(G).to_precision(torch.bfloat16)
    twin = copy.deepcopy(half).to_precision(torch.float32)
    settings = InversionSettings(method="w+", steps=3, optimize_noise=True)
    a, b = invert(half, target, settings=settings), invert(twin, target, settings=settings)
    torch.testing.assert_close(a.ws, b.ws, rtol=0, atol=0)
    assert all(n.dtype == torch.float32 for n in a.noise)
    for x, y in zip(a.noise, b.noise):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert half.precision == torch.bfloat16 and half.synthesis.blocks()[-1].conv1.noise_const.dtype == torch.bfloat16


# ---- the GPU check script ----------------------------------------------------------------------------------------

def test_the_gpu_check_loads_every_format_and_matches_the_fixtures(reference_dir):
    """The script's fixture part at float32 on the CPU: the NVIDIA pickle it writes, the rosinality file and the
    project's own files converted from both load and match the fixtures at their tolerance."""
    from benchmarks import gpu_check

    rows = gpu_check.check_fixtures(reference_dir, torch.device("cpu"), (torch.float32,))
    assert set(rows) == {"nvidia-pkl", "rosinality-pt", "native (from nvidia)", "native (from rosinality)"}
    for fmt, by_precision in rows.items():
        row = by_precision["float32"]
        assert row["image_cases"] > 0 and row["max_abs"] < 1e-4 and row["report"] is None, fmt


def test_the_gpu_check_refuses_cuda_without_a_gpu(monkeypatch, capsys):
    from benchmarks import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as e:
        gpu_check.main(["--device", "cuda"])
    assert e.value.code == 2 and "--device cpu --quick" in capsys.readouterr().err
