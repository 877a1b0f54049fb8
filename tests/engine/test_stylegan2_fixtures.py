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


@torch.no_grad()
def test_cross_format_same_network(rosinality):
    """rosinality weights converted through our loader render what NVIDIA's layout would (FACTS §13)."""
    fx, G, _ = rosinality
    sd = {k: v for k, v in G.state_dict().items()}
    G2 = load_generator({"G_ema": sd})
    z = fx["cases"]["plain"]["inputs"]["z"]
    torch.testing.assert_close(G2(z, noise_mode="const"), G(z, noise_mode="const"), rtol=0, atol=0)
