"""TUNIT: the eight cases of the shared fixture through ``load_tunit`` (the fixture's checkpoint written as a
training folder with ``checkpoint.txt`` and ``model_<epoch>.ckpt``), the full-size released layouts, other
configurations inferred from their weights, strict refusals, input-size errors and the inference helpers."""
from __future__ import annotations

import copy

import pytest
import torch

from engine.algorithms.tunit_losses import (
    TunitWeights,
    copy_buffers,
    discriminator_losses,
    ema_update,
    generator_losses,
    guiding_losses,
    mutual_information_loss,
    pseudo_labels,
    update_queue,
)
from engine.convert.tunit import CHECKPOINT_LIST, load_tunit, network_from_state_dict
from engine.errors import ModelFormatError
from engine.models.tunit import (
    VGG11,
    Discriminator,
    Generator,
    GuidingConfig,
    GuidingNetwork,
    TunitDiscriminatorConfig,
    TunitGeneratorConfig,
    cluster_labels,
    cluster_styles,
    reference_style,
    translate,
    tunit_checkpoint,
)

from .i2i_helpers import LOSS_TOL, TOL, fixture_case, load_fixture, load_manifests, manifest_entry, zeros

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fx(reference_dir):
    return load_fixture(reference_dir, "tunit_s64.pt")


@pytest.fixture(scope="module")
def folder(fx, tmp_path_factory):
    """A training folder as TUNIT leaves it: checkpoint.txt lists the saved files, the last one is loaded."""
    d = tmp_path_factory.mktemp("tunit")
    epoch = fx["checkpoint"]["epoch"]
    torch.save(fx["checkpoint"], d / f"model_{epoch}.ckpt")
    (d / CHECKPOINT_LIST).write_text(f"model_{epoch - 1}.ckpt\nmodel_{epoch}.ckpt\n")
    return d


@pytest.fixture(scope="module")
def model(folder):
    return load_tunit(folder)


def test_inferred_architecture_matches_the_fixture_config(fx, model):
    c = fx["config"]
    n = model.networks
    assert set(n) == {"G", "G_EMA", "C", "C_EMA", "D"} and model.epoch == fx["checkpoint"]["epoch"]
    assert n["C"].cfg == GuidingConfig(features=tuple(c["C_cfg"]), sty_dim=c["sty_dim"], output_k=c["output_k"])
    g = n["G_EMA"].cfg
    assert (g.nf, g.n_res, g.sty_dim, g.img_size) == (c["G_nf"], c["n_res"], c["sty_dim"], c["img_size"])
    assert n["D"].cfg == TunitDiscriminatorConfig(img_size=c["img_size"], dim_in=c["D_dim_in"],
                                             max_conv_dim=c["D_max_conv_dim"], output_k=c["output_k"])
    for name, key in (("G", "G_state_dict"), ("C", "C_state_dict"), ("D", "D_state_dict")):
        assert list(n[name].state_dict()) == list(fx["checkpoint"][key]), f"{name}: key order differs"
    assert model.generator is n["G_EMA"] and model.style_encoder is n["C_EMA"] and model.cluster_net is n["C"]


@torch.no_grad()
def test_C_eval(fx, model):
    C = model.networks["C"]
    i, e = fixture_case(fx, "C_eval")
    out = C(i["x"])
    torch.testing.assert_close(out["cont"], e["cont"], **TOL)
    torch.testing.assert_close(out["disc"], e["disc"], **TOL)
    i, e = fixture_case(fx, "C_eval_sty")
    assert fx["cases"]["C_eval_sty"]["kwargs"] == {"sty": True}
    torch.testing.assert_close(C(i["x"], sty=True), e["cont"], **TOL)
    torch.testing.assert_close(C.moco(i["x"]), e["cont"], **TOL)
    torch.testing.assert_close(reference_style(C, i["x"]), e["cont"], **TOL)


@torch.no_grad()
def test_C_train(fx, model):
    C = copy.deepcopy(model.networks["C"]).train()
    i, e = fixture_case(fx, "C_train")
    out = C(i["x"])
    torch.testing.assert_close(out["cont"], e["cont"], **TOL)
    torch.testing.assert_close(out["disc"], e["disc"], **TOL)


@torch.no_grad()
def test_G_eval(fx, model):
    G = model.generator
    i, e = fixture_case(fx, "G_eval")
    content = G.cnt_encoder(i["x_src"])
    torch.testing.assert_close(content, e["content"], **TOL)
    torch.testing.assert_close(G.mlp(i["s"]), e["adain_params"], **TOL)
    weight, bias = G.adain_params(i["s"])[0]
    torch.testing.assert_close(weight.reshape(-1), e["first_adain_weight"], **TOL)
    torch.testing.assert_close(bias.reshape(-1), e["first_adain_bias"], **TOL)
    torch.testing.assert_close(G.decode(content, i["s"]), e["out"], **TOL)
    torch.testing.assert_close(G(i["x_src"], i["s"]), e["out"], **TOL)
    torch.testing.assert_close(translate(G, i["x_src"], i["s"]), e["out"], **TOL)


def test_G_cluster_average_style(fx, model):
    i, e = fixture_case(fx, "G_cluster_average_style")
    n = len(i["x_cluster"])
    styles = cluster_styles(model.style_encoder, i["x_cluster"], torch.zeros(n, dtype=torch.long))
    assert list(styles) == [0]
    torch.testing.assert_close(styles[0][None], e["s_avg"], **TOL)
    torch.testing.assert_close(translate(model.generator, i["x_src"], styles[0]), e["out"], **TOL)


@torch.no_grad()
def test_D_eval(fx, model):
    i, e = fixture_case(fx, "D_eval")
    logit, feat = model.networks["D"](i["x"], i["y"])
    torch.testing.assert_close(logit, e["logit"], **TOL)
    torch.testing.assert_close(feat, e["feat"], **TOL)


def test_train_iteration_unsup(fx, model):
    c = fx["config"]
    w = TunitWeights(w_gp=c["w_gp"], w_rec=c["w_rec"], w_adv=c["w_adv"], w_vec=c["w_vec"], temperature=c["temp"],
                     queue_size=1024)
    C, C_EMA, G, D = (copy.deepcopy(model.networks[k]).train() for k in ("C", "C_EMA", "G", "D"))
    i, e = fixture_case(fx, "train_iteration_unsup")
    x_org, x_ref_idx, queue = i["x_org"], i["x_ref_idx"], i["queue"]
    x_ref = x_org[x_ref_idx]
    got = guiding_losses(C, C_EMA, x_org, i["x_tf"], queue, weights=w)
    got["y_org"], got["y_ref"] = pseudo_labels(C, x_org, x_ref_idx)
    with torch.no_grad():
        x_fake = G.decode(G.cnt_encoder(x_org), C.moco(x_ref))
    got.update(discriminator_losses(D, x_ref, x_fake, got["y_ref"], weights=w))
    got.update(generator_losses(G, C, C_EMA, D, x_org, x_ref, got["y_org"], got["y_ref"], queue, weights=w))
    got["queue_after"] = update_queue(queue, got["k_cont"], size=w.queue_size)
    torch.testing.assert_close(x_fake, e["x_fake"], **TOL)  # the fake fed to D equals the G step's
    for key, value in e.items():
        actual = got[key].detach()
        if value.dtype == torch.int64:
            assert torch.equal(actual, value), key
        else:
            tol = LOSS_TOL if value.ndim == 0 else TOL
            torch.testing.assert_close(actual, value, **tol, msg=lambda m, k=key: f"{k}: {m}")
    assert len(e) == 23
    # the generator loss reaches G and C (C's optimiser steps after the G backward); not C_EMA
    got["g_loss"].backward()
    assert G.mlp.model[0].fc.weight.grad is not None and C.cont.weight.grad is not None
    assert all(p.grad is None for p in C_EMA.parameters())


def test_ema_update(fx, model):
    i, e = fixture_case(fx, "ema_update")
    C_EMA = copy.deepcopy(model.networks["C_EMA"])
    buffers = {k: v.clone() for k, v in C_EMA.named_buffers()}
    ema_update(C_EMA, model.networks["C"], beta=fx["cases"]["ema_update"]["kwargs"]["beta"])
    torch.testing.assert_close(C_EMA.cont.weight, e["C_EMA_after/cont.weight"], **TOL)
    assert all(torch.equal(v, buffers[k]) for k, v in C_EMA.named_buffers())  # parameters only
    C = model.networks["C"]
    C_EMA.features[1].running_mean.add_(1.0)  # buffers are copied explicitly (per epoch in the reference)
    copy_buffers(C_EMA, C)
    assert all(torch.equal(v, dict(C.named_buffers())[k]) for k, v in C_EMA.named_buffers())


def test_mutual_information_of_independent_and_identical_views():
    k = 4
    p = torch.eye(k)  # each sample certain of a different cluster, both views agree: MI = log K
    torch.testing.assert_close(mutual_information_loss(p, p), -torch.log(torch.tensor(float(k))))
    u = torch.full((8, k), 1.0 / k)  # uninformative views: MI = 0
    torch.testing.assert_close(mutual_information_loss(u, u), torch.tensor(0.0), atol=1e-6, rtol=0)


# --- released full-size layouts -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifests(reference_dir):
    return load_manifests(reference_dir, "tunit")


@pytest.mark.parametrize("size, nf, n_downs", [(128, 64, 3), (256, 32, 4)])
def test_released_generator_layouts(manifests, size, nf, n_downs):
    entry = manifest_entry(manifests, f"G (img_size={size}")
    G = network_from_state_dict("G_EMA", zeros(entry["keys"]))
    assert G.cfg == TunitGeneratorConfig(nf=nf, n_downs=n_downs, n_res=2, sty_dim=128)
    assert G.cfg.img_size == size and G.cfg.num_adain_params == G.mlp.model[-1].fc.out_features
    assert {k: list(v.shape) for k, v in G.state_dict().items()} == entry["keys"]
    assert sum(v.numel() for v in G.state_dict().values()) == entry["num_values"]


@pytest.mark.parametrize("size, dim_in", [(128, 64), (256, 32)])
def test_released_discriminator_layouts(manifests, size, dim_in):
    entry = manifest_entry(manifests, f"D (img_size={size}")
    D = network_from_state_dict("D", zeros(entry["keys"]))
    assert D.cfg == TunitDiscriminatorConfig(img_size=size, dim_in=dim_in, max_conv_dim=1024, output_k=10)
    assert {k: list(v.shape) for k, v in D.state_dict().items()} == entry["keys"]
    assert sum(v.numel() for v in D.state_dict().values()) == entry["num_values"]


def test_released_guiding_layout_and_checkpoint_keys(manifests, fx):
    entry = manifest_entry(manifests, "C (GuidingNet")
    C = network_from_state_dict("C_EMA", zeros(entry["keys"]))
    assert C.cfg == GuidingConfig(features=VGG11, sty_dim=128, output_k=10)
    assert {k: list(v.shape) for k, v in C.state_dict().items()} == entry["keys"]
    assert sum(v.numel() for v in C.state_dict().values()) == entry["num_values"]
    # a model_<epoch>.ckpt with every top-level key (optimisers, FID network) and multi-GPU prefixes
    top = manifests["_checkpoint_top_level_keys"]
    ck = {k: {"state": {}, "param_groups": []} for k in top if k.endswith("_optimizer")}
    ck.update(epoch=7, inceptionNet_state_dict={"blocks.0.0.conv.weight": torch.zeros(1)})
    for key in top:
        if key.endswith("_state_dict") and key != "inceptionNet_state_dict":
            ck[key] = {f"module.{k}": v for k, v in fx["checkpoint"][key].items()}
    assert set(ck) == set(top)
    m = load_tunit(ck)
    assert set(m.networks) == {"G", "G_EMA", "C", "C_EMA", "D"} and m.epoch == 7


# --- other configurations, inferred from their weights ----------------------------------------------------------

@pytest.mark.parametrize("cfg", [TunitGeneratorConfig(nf=4, n_downs=3, n_res=1, sty_dim=16, nf_mlp=32, mlp_blocks=4),
                                 TunitGeneratorConfig(nf=4, n_downs=1, n_res=0, sty_dim=8, nf_mlp=16, mlp_blocks=2)])
def test_generator_variants_round_trip(cfg):
    G = Generator(cfg, seed=2).eval()
    G2 = network_from_state_dict("G", dict(G.state_dict()))
    assert G2.cfg == cfg
    x, s = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, cfg.sty_dim)
    with torch.no_grad():
        out = G2(x, s)
        torch.testing.assert_close(out, G(x, s), rtol=0, atol=0)
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1


@pytest.mark.parametrize("features", [(4, "M", 8, 8, "M"), (4, 4, "M", "M", 8, "M")])
def test_guiding_variants_round_trip(features):
    cfg = GuidingConfig(features=features, sty_dim=6, output_k=3)
    C = GuidingNetwork(cfg, seed=4).eval()
    C2 = network_from_state_dict("C", dict(C.state_dict()))
    assert C2.cfg == cfg
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(C2(x)["disc"], C(x)["disc"], rtol=0, atol=0)
    assert C2(x)["cont"].shape == (2, 6)


def test_discriminator_variant_round_trip():
    cfg = TunitDiscriminatorConfig(img_size=32, dim_in=4, max_conv_dim=8, output_k=3)
    D = Discriminator(cfg, seed=6)
    D2 = network_from_state_dict("D", dict(D.state_dict()))
    assert D2.cfg == cfg
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([2, 0])
    with torch.no_grad():
        logit, feat = D2(x, y)
        torch.testing.assert_close(logit, D(x, y)[0], rtol=0, atol=0)
    torch.testing.assert_close(logit, feat.flatten(1)[torch.arange(2), y], rtol=0, atol=0)


# --- file handling ----------------------------------------------------------------------------------------------

def test_checkpoint_list_resolution(fx, tmp_path):
    ck = dict(fx["checkpoint"])
    torch.save(ck, tmp_path / "model_9.ckpt")
    (tmp_path / CHECKPOINT_LIST).write_text("logs/run/model_9.ckpt\n")  # a path from the training machine
    assert load_tunit(tmp_path).epoch == ck["epoch"]
    (tmp_path / CHECKPOINT_LIST).write_text("model_10.ckpt\n")
    with pytest.raises(ModelFormatError, match="names 'model_10.ckpt'"):
        load_tunit(tmp_path)
    (tmp_path / CHECKPOINT_LIST).unlink()
    with pytest.raises(ModelFormatError, match="no checkpoint.txt.*model_9.ckpt"):
        load_tunit(tmp_path)
    assert set(load_tunit(tmp_path / "model_9.ckpt").networks) == {"G", "G_EMA", "C", "C_EMA", "D"}


def test_old_residual_block_names(fx):
    sd = {k.replace(".model.0.model.", ".blocks.0.block.").replace(".model.1.model.", ".blocks.1.block."): v
          for k, v in fx["checkpoint"]["G_EMA_state_dict"].items()}
    assert sd != fx["checkpoint"]["G_EMA_state_dict"]
    m = load_tunit({"G_EMA_state_dict": sd})
    assert m.notes and "blocks/block" in m.notes[0]
    i, e = fixture_case(fx, "G_eval")
    torch.testing.assert_close(translate(m.generator, i["x_src"], i["s"]), e["out"], **TOL)


def test_mismatched_files_are_refused(fx):
    ck = fx["checkpoint"]
    with pytest.raises(ModelFormatError, match="G_state_dict.*cnt_encoder"):
        load_tunit({"G_state_dict": ck["D_state_dict"]})
    with pytest.raises(ModelFormatError, match="unexpected top-level keys 'args'"):
        load_tunit({**ck, "args": 1})
    with pytest.raises(ModelFormatError, match="not a TUNIT checkpoint"):
        load_tunit({"state_dict": ck["G_state_dict"]})
    sd = dict(ck["C_state_dict"])
    sd["cont.weight"] = sd["cont.weight"][:, :5]
    with pytest.raises(ModelFormatError, match="wrong shapes 'cont.weight"):
        load_tunit({"C_state_dict": sd})
    other = Generator(TunitGeneratorConfig(nf=4, n_downs=2, sty_dim=64), seed=0).state_dict()
    with pytest.raises(ModelFormatError, match="style code size"):
        load_tunit({"C_EMA_state_dict": ck["C_EMA_state_dict"], "G_EMA_state_dict": other})
    with pytest.raises(ModelFormatError, match="neither G_EMA nor G"):
        load_tunit({"C_state_dict": ck["C_state_dict"]}).generator  # noqa: B018


def test_project_format_round_trip(fx, model, tmp_path):
    path = tmp_path / "tunit.pt"
    nets = {k: model.networks[k] for k in ("G_EMA", "C_EMA", "C")}
    torch.save(tunit_checkpoint(nets, extras={"epoch": 5}), path)
    back = load_tunit(path)
    assert set(back.networks) == set(nets) and back.epoch == 5
    i, e = fixture_case(fx, "G_eval")
    torch.testing.assert_close(translate(back.generator, i["x_src"], i["s"]), e["out"], **TOL)


def test_input_sizes_the_networks_cannot_take(model):
    G, D, C = model.generator, model.networks["D"], model.networks["C"]
    with pytest.raises(ValueError, match="multiples of 4"):
        G(torch.zeros(1, 3, 62, 64), torch.zeros(1, 128))
    with pytest.raises(ValueError, match=r"\[B, 3, 64, 64\]"):
        D(torch.zeros(1, 3, 128, 128), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="sides >= 32"):
        C(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\[B, 128\]"):
        G(torch.zeros(1, 3, 64, 64), torch.zeros(1, 64))
    with torch.no_grad():
        assert G(torch.zeros(1, 3, 96, 64), torch.zeros(1, 128)).shape == (1, 3, 96, 64)


# --- inference helpers ------------------------------------------------------------------------------------------

def test_cluster_styles_group_by_cluster(fx, model):
    i, _ = fixture_case(fx, "G_cluster_average_style")
    x = torch.cat([i["x_cluster"], i["x_src"]])
    C, C_EMA = model.cluster_net, model.style_encoder
    labels = cluster_labels(C, x, batch_size=3)
    with torch.no_grad():
        torch.testing.assert_close(labels, C.iic(x).argmax(1), rtol=0, atol=0)
        codes = C_EMA.moco(x)
    styles = cluster_styles(C_EMA, x, C_cluster=C, batch_size=3)
    assert list(styles) == sorted(set(labels.tolist()))
    for k, s in styles.items():
        torch.testing.assert_close(s, codes[labels == k].mean(0), **TOL)
    with pytest.raises(ValueError, match="one label per image"):
        cluster_styles(C_EMA, x, torch.zeros(3, dtype=torch.long))


def test_translate_broadcasts(fx, model):
    i, _ = fixture_case(fx, "G_eval")
    G = model.generator
    one_image_many_styles = translate(G, i["x_src"][0], i["s"])
    assert one_image_many_styles.shape == (4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(one_image_many_styles[2:3], G(i["x_src"][:1], i["s"][2:3]), **TOL)
        torch.testing.assert_close(translate(G, i["x_src"], i["s"][1]), G(i["x_src"], i["s"][1:2].expand(4, -1)),
                                   **TOL)
    with pytest.raises(ValueError, match="4 images and 2 style codes"):
        translate(G, i["x_src"], i["s"][:2])
