"""Layer swap and the UI2I translation modes: every case of ``ui2i_s64.pt`` it covers, through ``load_generator``
on the fixture's checkpoint dicts, plus invariants on tiny random generator pairs.

Nothing about the fixture's layout is assumed: depths come from the stored UI2I ``swap_layer`` indices, means and
architectures from the loaded generators.
"""
from __future__ import annotations

import pytest
import torch

from engine import Generator, GeneratorConfig, load_generator
from engine.algorithms import layer_swap as ls
from engine.algorithms.latents import truncate

from .i2i_helpers import TOL  # the i2i README's float32 agreement and the measured spread (FIXTURE_SPREAD.md)

# ---------------------------------------------------------------------------------------------------- fixture cases

@pytest.fixture(scope="module")
def ui2i(reference_dir):
    fx = torch.load(reference_dir / "i2i" / "ui2i_s64.pt", weights_only=True)
    ck = fx["checkpoint"]
    return fx["cases"], load_generator(ck["base"]), load_generator(ck["target"]), load_generator(ck["target3"])


@pytest.mark.parametrize("index", [1, 3, 5])
def test_fixture_layer_swap_plain(ui2i, index):
    cases, g1, g2, _ = ui2i
    case = cases[f"layer_swap_plain_l{index}"]
    i, e = case["inputs"], case["expected"]
    depth = ls.depth_of_swap_layer(case["kwargs"]["swap_layer"])
    with torch.no_grad():
        feat = ls.swap_features(g1, i["w"], depth=depth, noise=i["noise1"])
        out = ls.layer_swap(g1, g2, i["w"], depth=depth, noise_base=i["noise1"], noise_target=i["noise2"])
        base_img = g1.synthesize_w(i["w"], noise=i["noise1"])
    torch.testing.assert_close(feat, e["swap_feature"], **TOL)
    torch.testing.assert_close(out, e["out"], **TOL)
    torch.testing.assert_close(base_img, e["base_img"], **TOL)
    # the reference's output is neither image (the target's low-resolution RGB skip is kept)
    assert (out - e["base_img"]).abs().max() > 0.1
    assert (out - cases["target_plain"]["expected"]["out"]).abs().max() > 0.1


def test_fixture_no_swap_is_target_plain(ui2i):
    cases, g1, g2, _ = ui2i
    i, e = cases["target_plain"]["inputs"], cases["target_plain"]["expected"]
    with torch.no_grad():
        for depth in (0, 4):
            for mode in ls.SWAP_MODES:
                out = ls.layer_swap(g1, g2, i["w"], depth=depth, noise_target=i["noise"], mode=mode, blend=1.0)
                torch.testing.assert_close(out, e["out"], **TOL)


def test_fixture_gen_multi_style(ui2i):
    cases, g1, g2, _ = ui2i
    case = cases["gen_multi_style"]
    i, e = case["inputs"], case["expected"]
    torch.testing.assert_close(g2.w_avg, i["mean2"].reshape(-1), rtol=0, atol=0)  # the target's own mean
    with torch.no_grad():
        styles = ls.appearance_codes(g2, i["z_style"], psi=case["kwargs"]["truncation"])
        depth = ls.depth_of_swap_layer(case["kwargs"]["swap_layer"])
        out = ls.translate_multimodal(g1, g2, i["w"], styles, depth=depth, noise_base=i["noise1"],
                                      noise_target=i["noise2"])
    torch.testing.assert_close(styles, e["w_style"], **TOL)
    torch.testing.assert_close(out, e["out"], **TOL)


def test_fixture_gen_ref_published(ui2i):
    cases, g1, g2, _ = ui2i
    case = cases["gen_ref"]
    i, e = case["inputs"], case["expected"]
    psi = case["kwargs"]["truncation"]
    with torch.no_grad():
        ws_content, _ = ls.published_reference_latents(g1, g2, i["w"], i["w_ref"], psi=psi)
        for index in (1, 3, 5):
            depth = ls.depth_of_swap_layer(index)
            feat = ls.swap_features(g1, ws_content, depth=depth, noise=i["noise1"])
            out = ls.translate_reference_published(g1, g2, i["w"], i["w_ref"], depth=depth, psi=psi,
                                                   noise_base=i["noise1"], noise_target=i["noise2"])
            fixed = ls.translate_reference(g1, g2, i["w"], i["w_ref"], depth=depth, psi=psi,
                                           noise_base=i["noise1"], noise_target=i["noise2"])
            torch.testing.assert_close(feat, e[f"swap_feature_l{index}"], **TOL)
            torch.testing.assert_close(out, e[f"out_ls{index}"], **TOL)
            assert (fixed - out).abs().max() > 0.1  # the fix changes the result


def test_fixture_multi_domain(ui2i):
    cases, g1, g2, g3 = ui2i
    i, e = cases["multi_domain"]["inputs"], cases["multi_domain"]["expected"]
    depths = tuple(ls.depth_of_swap_layer(k) for k in (1, 3, 5))
    with torch.no_grad():
        r = ls.multi_domain(g1, [g2, g3], i["z"], depths=depths, psi=(0.5, 0.7), mean=g2.w_avg,
                            noise_base=i["noise1"], noise_targets=[i["noise2"], i["noise3"]])
    torch.testing.assert_close(r.base, e["img_a"], **TOL)
    torch.testing.assert_close(r.plain[0], e["woft"], **TOL)
    torch.testing.assert_close(r.plain[1], e["ft"], **TOL)
    for index, depth in zip((1, 3, 5), depths):
        torch.testing.assert_close(r.swapped[1][depth], e[f"fcftl{index}"], **TOL)


def test_fixture_mappings_differ_so_misuse_would_show(ui2i):
    """The fixture's target mapping was perturbed: feeding the content through it would miss the expected values."""
    cases, g1, g2, _ = ui2i
    i, e = cases["gen_ref"]["inputs"], cases["gen_ref"]["expected"]
    with torch.no_grad():
        wrong = truncate(g2.mapping(i["w"]), g2.w_avg, 0.5)  # content through the target's mapping
        feat = ls.swap_features(g1, wrong, depth=8, noise=i["noise1"])
    assert (feat - e["swap_feature_l1"]).abs().max() > 1e-2


# ------------------------------------------------------------------------------------------- tiny generator pairs

CFG = GeneratorConfig(img_resolution=32, channels=(16, 16, 8, 8), z_dim=8, w_dim=8, mapping_layers=2)


def _randomised(seed: int) -> Generator:
    G = Generator(CFG, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.copy_(0.1 + 0.4 * torch.rand([], generator=g))
            elif name.endswith("bias") and "mapping" not in name:
                p.add_(0.2 * torch.randn(p.shape, generator=g))
    return G.eval().requires_grad_(False)


def _finetuned(base: Generator, *, seed: int, scale: float = 0.3, mapping: bool = True) -> Generator:
    """A copy of ``base`` with every parameter moved by ``scale`` of its std (the mapping only if ``mapping``)."""
    G = Generator(CFG, seed=0)
    sd = base.state_dict()
    g = torch.Generator().manual_seed(seed)
    for name, p in base.named_parameters():
        if mapping or not name.startswith("mapping."):
            std = float(p.std()) if p.numel() > 1 else float(p.abs()) + 1e-3
            sd[name] = p + scale * std * torch.randn(p.shape, generator=g)
    G.load_state_dict(sd)
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def pair(one_thread):
    base = _randomised(1)
    return base, _finetuned(base, seed=2)


def _ws(n: int, seed: int = 5) -> torch.Tensor:
    return torch.randn(n, CFG.w_dim, generator=torch.Generator().manual_seed(seed))


def test_depth_choices_and_swap_layer_indices(pair):
    base, _ = pair
    assert ls.swap_depth_choices(base) == (8, 16, 32)
    assert [ls.depth_of_swap_layer(k) for k in (1, 3, 5, 7, 9, 11, 13, 15)] == [8, 16, 32, 64, 128, 256, 512, 1024]
    for bad in (0, 2, 4, -1, 2.5):
        with pytest.raises(ValueError, match="odd"):
            ls.depth_of_swap_layer(bad)


def test_blocks_compose_to_forward(pair):
    base, _ = pair
    syn = base.synthesis
    for b in (1, 3):
        ws = base.mapping(torch.randn(b, CFG.z_dim, generator=torch.Generator().manual_seed(b)))
        for mode in ("const", "none"):
            noises = syn.resolve_noise(b, noise_mode=mode)
            x = img = None
            for r in CFG.resolutions:
                x = syn.block_convs(r, x, ws, noises)
                img = syn.block_torgb(r, x, img, ws)
            torch.testing.assert_close(img, syn(ws, noise_mode=mode), rtol=0, atol=0)
    with pytest.raises(ValueError, match="resolution"):
        syn.block_convs(12, None, ws, noises)


@pytest.mark.parametrize("mode", ls.SWAP_MODES)
def test_blend_zero_is_the_hard_swap_and_profile_is_a_step(pair, mode):
    base, target = pair
    ws = _ws(2)
    for depth in ls.swap_depth_choices(base):
        hard = ls.layer_swap(base, target, ws, depth=depth, mode=mode)
        torch.testing.assert_close(ls.layer_swap(base, target, ws, depth=depth, mode=mode, blend=0.0), hard,
                                   rtol=0, atol=0)
        assert ls.blend_profile(base, depth, 0.0) == {r: float(r == depth) for r in CFG.resolutions if r >= depth}
        if depth < CFG.img_resolution:  # a tiny blend is close to, but not exactly, the hard swap
            soft = ls.layer_swap(base, target, ws, depth=depth, mode=mode, blend=1e-3)
            assert 0 < (soft - hard).abs().max() < 1e-2


def test_weights_mode_full_depth_is_the_base_and_feature_mode_is_not(pair):
    base, target = pair
    ws_b, ws_t = _ws(2), _ws(2, seed=9)
    full = CFG.img_resolution
    img_base = base.synthesize_w(ws_b)
    for blend in (0.0, 2.0):
        out = ls.layer_swap(base, target, ws_b, ws_target=ws_t, depth=full, mode="weights", blend=blend)
        torch.testing.assert_close(out, img_base, rtol=0, atol=1e-6)
    feat = ls.layer_swap(base, target, ws_b, depth=full, mode="feature")
    assert (feat - img_base).abs().max() > 1e-2  # the target's ToRGBs remain in feature mode


def test_below_first_swappable_block_is_the_target(pair):
    base, target = pair
    ws_b, ws_t = _ws(2), _ws(2, seed=9)
    img_t = target.synthesize_w(ws_t)
    for depth in (0, 4):
        for mode in ls.SWAP_MODES:
            out = ls.layer_swap(base, target, ws_b, ws_target=ws_t, depth=depth, mode=mode, blend=1.5)
            torch.testing.assert_close(out, img_t, rtol=0, atol=0)


def test_feature_swap_keeps_the_targets_low_resolution_skip(pair):
    """Replacing the target's low-resolution layers changes a feature swap only through the RGB skip below it."""
    base, target = pair
    other = _finetuned(target, seed=7)
    sd = target.state_dict()
    for k, v in other.state_dict().items():  # a target that differs only below 16 px
        if k.startswith(("synthesis.b4.", "synthesis.b8.")) and k.endswith(("weight", "bias", "const")):
            sd[k] = v
    low = Generator(CFG, seed=0)
    low.load_state_dict(sd)
    low.eval().requires_grad_(False)
    ws = _ws(1)
    assert (ls.layer_swap(base, target, ws, depth=16) - ls.layer_swap(base, low, ws, depth=16)).abs().max() > 1e-3
    torch.testing.assert_close(ls.layer_swap(base, target, ws, depth=16, mode="weights"),
                               ls.layer_swap(base, low, ws, depth=16, mode="weights"), rtol=0, atol=0)


def test_blend_interpolates_monotonically(pair):
    base, target = pair
    ws = _ws(1)
    # the profile: non-increasing in resolution, non-decreasing in the blend width
    for depth in ls.swap_depth_choices(base):
        prev = None
        for blend in (0.0, 0.5, 1.0, 3.0):
            prof = ls.blend_profile(base, depth, blend)
            vals = [prof[r] for r in sorted(prof)]
            assert vals[0] == 1.0 and all(a >= b for a, b in zip(vals, vals[1:]))
            if prev is not None:
                assert all(prof[r] >= prev[r] for r in prof)
            prev = prof
    # feature mode with one blended block: the image moves along a straight line, by the blend weight
    depth = CFG.img_resolution // 2
    hard = ls.layer_swap(base, target, ws, depth=depth)
    dirs = []
    for blend in (0.25, 1.0, 4.0):
        a = ls.blend_profile(base, depth, blend)[CFG.img_resolution]
        dirs.append((ls.layer_swap(base, target, ws, depth=depth, blend=blend) - hard) / a)
    for d in dirs[1:]:
        torch.testing.assert_close(d, dirs[0], rtol=1e-4, atol=1e-4)
    # both modes: a wider blend moves the result steadily away from the hard swap
    for mode in ls.SWAP_MODES:
        for depth in (8, 16):
            hard = ls.layer_swap(base, target, ws, depth=depth, mode=mode)
            dist = [float((ls.layer_swap(base, target, ws, depth=depth, mode=mode, blend=b) - hard).norm())
                    for b in (0.0, 0.5, 1.0, 2.0, 4.0)]
            assert dist[0] == 0 and all(x < y for x, y in zip(dist, dist[1:])), (mode, depth, dist)


def test_the_targets_mapping_is_not_used_for_content(pair):
    """Swaps, translations and features depend on the target's synthesis only; appearance codes use its mapping."""
    base, target = pair
    remapped = _finetuned(target, seed=11, scale=0.0)
    with torch.no_grad():
        for name, p in remapped.mapping.named_parameters():
            p.add_(0.5 * p.std() * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    ws, w_ref = _ws(2), _ws(2, seed=3)
    styles = ls.multimodal_styles(target, n=3, seed=4)
    for mode in ls.SWAP_MODES:
        torch.testing.assert_close(ls.layer_swap(base, target, ws, depth=16, mode=mode, blend=1.0),
                                   ls.layer_swap(base, remapped, ws, depth=16, mode=mode, blend=1.0), rtol=0, atol=0)
        torch.testing.assert_close(ls.translate_multimodal(base, target, ws[:1], styles, depth=8, mode=mode),
                                   ls.translate_multimodal(base, remapped, ws[:1], styles, depth=8, mode=mode),
                                   rtol=0, atol=0)
        torch.testing.assert_close(ls.translate_reference(base, target, ws, w_ref, depth=8, mode=mode),
                                   ls.translate_reference(base, remapped, ws, w_ref, depth=8, mode=mode),
                                   rtol=0, atol=0)
    assert (ls.multimodal_styles(remapped, n=3, seed=4) - styles).abs().max() > 1e-3
    # a model distance of the hybrid that is all base is zero whatever the target's mapping
    assert ls.model_distance(base, remapped, n=3, seed=0, depth=CFG.img_resolution, mode="weights") == 0


def test_multimodal_styles_are_reproducible_by_seed(pair):
    base, target = pair
    s = ls.multimodal_styles(target, n=4, seed=10)
    assert s.shape == (4, CFG.w_dim)
    torch.testing.assert_close(ls.multimodal_styles(target, n=4, seed=10), s, rtol=0, atol=0)
    for i in range(4):
        # the same code up to float rounding of a batched vs a single matrix product
        torch.testing.assert_close(ls.multimodal_styles(target, n=1, seed=10 + i)[0], s[i], rtol=1e-6, atol=1e-6)
    assert (ls.multimodal_styles(target, n=4, seed=11)[:3] - s[:3]).abs().min() > 0
    # truncation towards the target's mean (or a given one)
    torch.testing.assert_close(ls.multimodal_styles(target, n=2, seed=3, psi=0.0), target.w_avg.expand(2, -1))
    mean = torch.linspace(-1, 1, CFG.w_dim)
    torch.testing.assert_close(ls.multimodal_styles(target, n=2, seed=3, psi=0.0, mean=mean), mean.expand(2, -1))
    full = ls.multimodal_styles(target, n=2, seed=3, psi=1.0)
    torch.testing.assert_close(ls.multimodal_styles(target, n=2, seed=3, psi=0.5),
                               torch.lerp(target.w_avg.expand(2, -1), full, 0.5), **TOL)
    with pytest.raises(ValueError, match="n must be"):
        ls.multimodal_styles(target, n=0, seed=1)


def test_translate_multimodal_one_content_many_styles(pair):
    base, target = pair
    content = _ws(1)
    styles = ls.multimodal_styles(target, n=3, seed=7)
    grid = ls.translate_multimodal(base, target, content, styles, depth=16, blend=0.5)
    assert grid.shape == (3, 3, CFG.img_resolution, CFG.img_resolution)
    for i in range(3):
        one = ls.layer_swap(base, target, content, ws_target=styles[i:i + 1], depth=16, blend=0.5)
        torch.testing.assert_close(grid[i:i + 1], one, **TOL)
    assert (grid[0] - grid[1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="broadcast"):
        ls.translate_multimodal(base, target, _ws(2), styles, depth=16)


def test_translate_reference_fixed(pair):
    base, target = pair
    w, w_ref = _ws(2), _ws(2, seed=3)
    out = ls.translate_reference(base, target, w, w_ref, depth=16)
    torch.testing.assert_close(out, ls.layer_swap(base, target, w, ws_target=w_ref, depth=16), rtol=0, atol=0)
    towards_mean = ls.translate_reference(base, target, w, w_ref, depth=16, psi=0.0)
    torch.testing.assert_close(towards_mean, ls.layer_swap(base, target, w, ws_target=target.w_avg.expand(2, -1),
                                                           depth=16), rtol=0, atol=0)
    published = ls.translate_reference_published(base, target, w, w_ref, depth=16)
    assert (published - out).abs().max() > 1e-3


def test_model_distance(pair):
    base, target = pair
    assert all(v == 0 for v in ls.model_distance_profile(base, base, n=5, seed=3, batch=2).values())
    d = ls.model_distance(base, target, n=5, seed=3, batch=2)
    assert d > 0
    assert ls.model_distance(target, base, n=5, seed=3, batch=4) == pytest.approx(d, rel=1e-5)
    assert ls.model_distance(base, target, n=5, seed=3, batch=5) == pytest.approx(d, rel=1e-5)
    assert ls.model_distance(base, target, n=5, seed=4) != pytest.approx(d, rel=1e-3)
    prof = ls.model_distance_profile(base, target, n=5, seed=3, mode="weights")
    assert set(prof) == {0, *ls.swap_depth_choices(base)}
    assert prof[0] == pytest.approx(d, rel=1e-5) and prof[CFG.img_resolution] == 0
    assert prof[16] == pytest.approx(ls.model_distance(base, target, n=5, seed=3, depth=16, mode="weights"),
                                     rel=1e-5)
    # a target further from the base is further away
    far = _finetuned(base, seed=2, scale=0.6)
    assert ls.model_distance(base, far, n=5, seed=3) > d
    with pytest.raises(ValueError, match="depth"):
        ls.model_distance(base, target, n=2, seed=0, depth=12)


def test_functions_leave_the_generators_unchanged(pair):
    base, target = pair
    before = [{k: v.clone() for k, v in G.state_dict().items()} for G in (base, target)]
    ws = _ws(2)
    ls.layer_swap(base, target, ws, depth=16, blend=1.0, mode="weights")
    ls.translate_multimodal(base, target, ws[:1], ls.multimodal_styles(target, n=2, seed=0), depth=8)
    ls.multi_domain(base, [target], torch.ones(1, CFG.z_dim), depths=(8, 16), psi=0.7)
    ls.model_distance(base, target, n=2, seed=0, depth=8)
    for G, sd in zip((base, target), before):
        after = G.state_dict()
        assert sd.keys() == after.keys() and all(torch.equal(sd[k], after[k]) for k in sd)


def test_multi_domain_shapes_and_defaults(pair):
    base, target = pair
    far = _finetuned(base, seed=8)
    z = torch.randn(2, CFG.z_dim, generator=torch.Generator().manual_seed(0))
    r = ls.multi_domain(base, [target, far], z, depths=(8, 32), psi=0.7)
    assert len(r.plain) == 2 and [sorted(s) for s in r.swapped] == [[8, 32], [8, 32]]
    ws_t = truncate(far.mapping(z), far.w_avg, 0.7)  # each model's own mapping and mean by default
    torch.testing.assert_close(r.plain[1], far.synthesis(ws_t), rtol=0, atol=0)
    torch.testing.assert_close(r.base, base(z), rtol=0, atol=0)
    torch.testing.assert_close(r.swapped[1][8], ls.layer_swap(base, far, base.mapping(z), ws_target=ws_t, depth=8),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match="psi lists"):
        ls.multi_domain(base, [target, far], z, depths=(8,), psi=(0.5,))


def test_clear_errors(pair):
    base, target = pair
    ws = _ws(1)
    for depth in (2, 12, 64):
        with pytest.raises(ValueError, match="depth must be"):
            ls.layer_swap(base, target, ws, depth=depth)
    with pytest.raises(ValueError, match="depth must be"):
        ls.swap_features(base, ws, depth=4)
    with pytest.raises(ValueError, match="mode"):
        ls.layer_swap(base, target, ws, depth=8, mode="toonify")
    with pytest.raises(ValueError, match="blend"):
        ls.layer_swap(base, target, ws, depth=8, blend=-1.0)
    with pytest.raises(ValueError, match="ws_base"):
        ls.layer_swap(base, target, torch.zeros(1, CFG.w_dim + 1), depth=8)
    other = Generator(GeneratorConfig(img_resolution=32, channels=(16, 16, 8, 4), z_dim=8, w_dim=8,
                                      mapping_layers=2), seed=0)
    with pytest.raises(ValueError, match="channels"):
        ls.layer_swap(base, other, ws, depth=8)
    with pytest.raises(ValueError, match="as z"):
        ls.translate_reference_published(base, target, base.mapping(ws), ws, depth=8)
