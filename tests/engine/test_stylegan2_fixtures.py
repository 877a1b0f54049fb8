"""Every case of the shared StyleGAN2 fixtures (rosinality and NVIDIA), run through the public loaders.

The checkpoint of each fixture is written to disk exactly as a user's file holds it and loaded with
``load_generator`` / ``load_discriminator``; nothing about the fixture's size or layout is assumed here.
"""
from __future__ import annotations

import pytest
import torch

from engine import load_discriminator, load_generator
from engine.algorithms.latents import crossover_rows, mix_styles, truncate

IMAGE_TOL = dict(rtol=1e-4, atol=1e-4)
LATENT_TOL = dict(rtol=1e-5, atol=1e-5)


def _fixture(reference_dir, name):
    return torch.load(reference_dir / "stylegan2" / f"{name}.pt", weights_only=True)


@pytest.fixture(scope="module")
def rosinality(reference_dir, tmp_path_factory):
    fx = _fixture(reference_dir, "rosinality_s32")
    path = tmp_path_factory.mktemp("ros") / "checkpoint.pt"
    torch.save(fx["checkpoint"], path)
    return fx, load_generator(path), load_discriminator(path)


@pytest.fixture(scope="module")
def nvlabs(reference_dir):
    fx = _fixture(reference_dir, "nvlabs_s32")
    ck = fx["checkpoint"]
    G = load_generator({"G_ema": ck["G_ema"], "init_kwargs": fx["config"]["G_init_kwargs"]})
    D = load_discriminator({"D": ck["D"], "init_kwargs": fx["config"]["D_init_kwargs"]})
    return fx, G, D


def _check(actual: dict, expected: dict):
    assert set(expected) <= set(actual), f"case produced {set(actual)}, expected {set(expected)}"
    for key, value in expected.items():
        tol = LATENT_TOL if key in ("w", "ws", "latent") else IMAGE_TOL
        torch.testing.assert_close(actual[key], value, **tol, msg=lambda m, k=key: f"{k}: {m}")


def _run_rosinality(G, D, case) -> dict:
    """Translate one rosinality reference call into our API."""
    i, kw = case["inputs"], case["kwargs"]
    if "logits" in case["expected"]:
        return {"logits": D(i["image"])}
    if "w_plus" in i:
        ws = i["w_plus"]
    elif "w" in i and "z" not in i:
        ws = i["w"].unsqueeze(1).expand(-1, G.num_ws, -1)
    else:
        sources = [G.mapping(i["z"])] + ([G.mapping(i["z2"])] if "z2" in i else [])
        if "truncation" in kw:
            sources = [truncate(s, i["truncation_latent"].reshape(-1), kw["truncation"]) for s in sources]
        ws = sources[0]
        if len(sources) == 2:
            ws = mix_styles(torch.stack(sources), crossover_rows(G.num_ws, kw["inject_index"]))
        if "image" not in case["expected"]:
            return {"w": ws[:, 0]}
    if "noise" in i:
        img = G.synthesis(ws, noise=i["noise"])
    elif case["call"].count("zeros("):
        img = G.synthesis(ws, noise_mode="none")
    else:
        img = G.synthesis(ws, noise_mode="const")
    return {"image": img, "latent": ws}


def _run_nvlabs(G, D, case) -> dict:
    i, kw = case["inputs"], case["kwargs"]
    if "logits" in case["expected"]:
        return {"logits": D(i["image"])}
    trunc = dict(truncation_psi=kw.get("truncation_psi", 1.0), truncation_cutoff=kw.get("truncation_cutoff"))
    if "ws" in i:
        return {"image": G.synthesis(i["ws"], noise_mode=kw["noise_mode"])}
    ws = G.mapping(i["z"], **trunc)
    if "z2" in i:
        ws = mix_styles(torch.stack([ws, G.mapping(i["z2"])]), crossover_rows(G.num_ws, kw["cutoff"]))
    out = {"ws": ws, "w": ws[:, 0]}
    if "image" in case["expected"]:
        out["image"] = G.synthesis(ws, noise_mode=kw.get("noise_mode", "const"))
    return out


ROSINALITY_CASES = ["mapping", "plain", "stored_noise", "zero_noise", "truncation", "style_mixing",
                    "style_mixing_truncation", "w_plus", "w_single", "batch1", "discriminator_b4",
                    "discriminator_b8"]
NVLABS_CASES = ["mapping", "mapping_truncation", "mapping_truncation_cutoff", "plain_const", "plain_none",
                "truncation", "truncation_cutoff", "style_mixing", "w_plus", "w_plus_none", "batch1",
                "discriminator_b4", "discriminator_b8"]


def test_fixture_case_lists_are_complete(rosinality, nvlabs):
    assert sorted(rosinality[0]["cases"]) == sorted(ROSINALITY_CASES)
    assert sorted(nvlabs[0]["cases"]) == sorted(NVLABS_CASES)


@pytest.mark.parametrize("name", ROSINALITY_CASES)
@torch.no_grad()
def test_rosinality_case(rosinality, name):
    fx, G, D = rosinality
    _check(_run_rosinality(G, D, fx["cases"][name]), fx["cases"][name]["expected"])


@pytest.mark.parametrize("name", NVLABS_CASES)
@torch.no_grad()
def test_nvlabs_case(nvlabs, name):
    fx, G, D = nvlabs
    _check(_run_nvlabs(G, D, fx["cases"][name]), fx["cases"][name]["expected"])


@torch.no_grad()
def test_rosinality_truncation_latent_is_the_files_latent_avg(rosinality):
    fx, G, _ = rosinality
    torch.testing.assert_close(G.w_avg, fx["checkpoint"]["latent_avg"].reshape(-1), rtol=0, atol=0)
    case = fx["cases"]["truncation"]
    ws = G.mapping(case["inputs"]["z"], truncation_psi=case["kwargs"]["truncation"])
    torch.testing.assert_close(ws, case["expected"]["latent"], **LATENT_TOL)


@torch.no_grad()
def test_nvlabs_file_without_init_kwargs_infers_the_same_network(nvlabs, tmp_path):
    fx, G_ref, _ = nvlabs
    path = tmp_path / "nvlabs_state.pt"
    torch.save(fx["checkpoint"], path)
    G = load_generator(path)
    D = load_discriminator(path)
    assert G.cfg == G_ref.cfg
    case = fx["cases"]["plain_const"]
    _check(_run_nvlabs(G, D, case), case["expected"])
    case = fx["cases"]["discriminator_b8"]
    _check(_run_nvlabs(G, D, case), case["expected"])
    assert any("inferred" in n for n in G.model_info.notes)


@torch.no_grad()
def test_stylegan3_repo_flattened_kwargs(nvlabs):
    """stylegan3's networks_stylegan2 takes the synthesis kwargs flattened; same weights, same images."""
    fx, _, _ = nvlabs
    kw = dict(fx["config"]["G_init_kwargs"])
    kw.update(kw.pop("synthesis_kwargs"))
    kw["fused_modconv_default"] = "inference_only"
    G = load_generator({"G_ema": fx["checkpoint"]["G_ema"], "init_kwargs": kw})
    case = fx["cases"]["truncation_cutoff"]
    _check(_run_nvlabs(G, None, case), case["expected"])


def _rosinality_to_nvlabs(g_ema: dict, latent_avg: torch.Tensor) -> dict:
    """FACTS §13's key table, written out here independently of the engine's converter: a rosinality ``g_ema`` as
    the NVIDIA ``G_ema`` state dict (without the constant ``resample_filter`` buffers)."""
    def res(k: int) -> int:  # convs.{2k}/{2k+1} and to_rgbs.{k} belong to the 2^(k+3) block
        return 2 ** (k + 3)

    def layer(name: str) -> str:
        if name == "conv1":
            return "synthesis.b4.conv1"
        if name == "to_rgb1":
            return "synthesis.b4.torgb"
        kind, index = name.split(".")
        if kind == "to_rgbs":
            return f"synthesis.b{res(int(index))}.torgb"
        return f"synthesis.b{res(int(index) // 2)}.conv{int(index) % 2}"

    out = {"mapping.w_avg": latent_avg.reshape(-1)}
    for key, value in g_ema.items():
        parts = key.split(".")
        if key.endswith((".blur.kernel", ".upsample.kernel")):
            continue
        if parts[0] == "style":
            out[f"mapping.fc{int(parts[1]) - 1}.{parts[2]}"] = value
        elif key == "input.input":
            out["synthesis.b4.const"] = value[0]
        elif parts[0] == "noises":
            i = int(parts[1].split("_")[1])
            name = "synthesis.b4.conv1" if i == 0 else f"synthesis.b{2 ** ((i + 1) // 2 + 2)}.conv{(i + 1) % 2}"
            out[f"{name}.noise_const"] = value[0, 0]
        else:
            name, rest = (".".join(parts[:2]), parts[2:]) if parts[0] in ("convs", "to_rgbs") else (parts[0], parts[1:])
            target, rest = layer(name), ".".join(rest)
            if rest == "conv.weight":
                out[f"{target}.weight"] = value[0]
            elif rest.startswith("conv.modulation."):
                out[f"{target}.affine.{rest.rsplit('.', 1)[1]}"] = value
            elif rest == "noise.weight":
                out[f"{target}.noise_strength"] = value.reshape(())
            elif rest in ("activate.bias", "bias"):
                out[f"{target}.bias"] = value.flatten()
            else:
                raise AssertionError(f"FACTS §13 has no row for {key}")
    return out


@pytest.mark.parametrize("name", [n for n in ROSINALITY_CASES if not n.startswith("discriminator")])
@torch.no_grad()
def test_cross_format_same_network(rosinality, name):
    """The rosinality weights converted to NVIDIA's layout by FACTS §13 (above, not the engine's converter) load
    through the NVIDIA path into the same network as the rosinality loader gives, and render the rosinality case."""
    fx, G, _ = rosinality
    G_nv = load_generator({"G_ema": _rosinality_to_nvlabs(fx["checkpoint"]["g_ema"], fx["checkpoint"]["latent_avg"])})
    assert G_nv.cfg == G.cfg
    ours, theirs = G.state_dict(), G_nv.state_dict()
    assert list(theirs) == list(ours)
    for key, value in ours.items():
        torch.testing.assert_close(theirs[key], value, rtol=0, atol=0, msg=lambda m, k=key: f"{k}: {m}")
    _check(_run_rosinality(G_nv, None, fx["cases"][name]), fx["cases"][name]["expected"])
