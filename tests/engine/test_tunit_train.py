"""TUNIT trainer: losses and updates, exact resume, held-out figures, release (and the shipped asset, if any)."""
from __future__ import annotations

import json

import pytest
import torch

from engine.assets import ASSETS_DIR, DEFAULT_TUNIT, verified_asset
from engine.convert.tunit import load_tunit
from engine.files.storage import file_sha256
from engine.models.domains import DomainClassifier, DomainConfig
from engine.models.tunit import translate
from engine.train.loop import CHECKPOINT_NAME
from engine.train.release.tunit import GRID_NAME, release_tunit
from engine.train.tunit import MODEL_NAME, TunitTrainConfig, TunitTrainer, evaluate, positive_view

read_state, trainer_from_state = TunitTrainer.read_state, TunitTrainer.from_state

DOMAINS = ("photo", "sketch")


def tiny(**kw) -> TunitTrainConfig:
    base = dict(steps=4, batch_size=4, size=16, domains=DOMAINS, clusters=2, separated=1, ema_start=2,
                epoch_steps=2, c_features=(4, 0, 8, 0), sty_dim=4, g_nf=4, g_downs=1, g_res=1, mlp_width=8,
                d_dim=4, d_max=8, eval_n=3, eval_every=100, checkpoint_every=100, log_every=1)
    base.update(kw)
    return TunitTrainConfig(**base)


def tiny_classifier(size=16) -> DomainClassifier:
    return DomainClassifier(DomainConfig(domain_names=DOMAINS, input_size=size, widths=(4, 4), blocks=(1, 1),
                                         stem_width=4), seed=0).eval()


def params(trainer: TunitTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_steps_have_finite_losses_and_update_every_trained_network():
    torch.manual_seed(0)
    t = TunitTrainer(tiny(), progress=False, classifier=tiny_classifier())
    before = params(t)
    first = t.train_step()
    assert first["phase"] == "guiding" and torch.isfinite(torch.tensor(first["c_loss"]))
    mid = params(t)
    assert all(torch.equal(before[k], mid[k]) for k in before if k.split(".")[0] in ("G", "D"))  # C only
    second = t.train_step()
    assert second["phase"] == "gan"
    for key in ("c_loss", "iic", "moco", "d_loss", "d_gp", "g_loss", "g_adv", "g_rec", "g_style"):
        assert torch.isfinite(torch.tensor(second[key])), key
    after = params(t)
    for net in ("C", "G", "D", "C_EMA"):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(net + ".")), net
    # G_EMA only starts (as a copy of G) at ema_start
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("G_EMA."))
    t.train_step()
    g, g_ema = t.model["G"].state_dict(), t.model["G_EMA"].state_dict()
    assert all(torch.equal(g[k], g_ema[k]) for k in g)
    assert t.queue.shape == (16, 4)  # one batch to start, then one per step


def test_positive_view_is_seeded_and_changes_images():
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    a = positive_view(x, torch.Generator().manual_seed(1))
    b = positive_view(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and a.abs().max() <= 1
    assert (a - x).abs().mean() > 0.05


def test_evaluate_figures_are_consistent():
    t = TunitTrainer(tiny(), progress=False, classifier=tiny_classifier())
    ev = t.evaluate()
    assert ev["n"] == 6 and sum(ev["cluster_sizes"]) == 6
    assert 0.5 <= ev["purity"] <= 1.0  # two balanced domains: the majority is at least half
    assert set(ev["accuracy"]) == set(ev["cluster_domain"])
    assert all(0.0 <= a <= 1.0 for a in ev["accuracy"].values())
    # a perfect clustering has purity 1
    x, labels = t._eval_data
    C = t.model["C"]
    with torch.no_grad():
        C.disc.weight.zero_()
        C.disc.bias.zero_()
    nets = dict(t.model.items())
    assert evaluate(nets, x, labels, DOMAINS)["purity"] == 0.5  # all in cluster 0: half of the images


def test_resume_repeats_an_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    clf = tiny_classifier()
    full = TunitTrainer(tiny(), progress=False, classifier=clf)
    full.train()
    half = TunitTrainer(tiny(steps=2), out_dir=tmp_path, progress=False, classifier=clf)
    assert half.train() == "done"
    state = read_state(tmp_path / CHECKPOINT_NAME)
    resumed = trainer_from_state(state, overrides={"steps": 4}, out_dir=tmp_path, progress=False, classifier=clf)
    assert resumed.step == 2
    resumed.train()
    assert resumed.step == 4
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(full.queue, resumed.queue)
    with pytest.raises(ValueError, match="cannot change"):
        trainer_from_state(state, overrides={"clusters": 3}, progress=False, classifier=clf)
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]


def test_release_writes_a_verified_loadable_model(tmp_path, monkeypatch):
    run = tmp_path / "run"
    clf = tiny_classifier()
    TunitTrainer(tiny(), out_dir=run, progress=False, classifier=clf).train()
    clf_path = tmp_path / "clf.pt"
    from engine.models.domains import save_domains

    save_domains(clf_path, clf)
    out = tmp_path / "assets"
    m = release_tunit(run / MODEL_NAME, out, eval_n=2, grid_rows=2, classifier=clf_path,
                     command_line="test")
    path = out / DEFAULT_TUNIT
    assert m["sha256"] == file_sha256(path)
    on_disk = json.loads((out / "tunit.json").read_text())
    assert on_disk["sha256"] == m["sha256"] and 0 <= on_disk["purity"] <= 1
    assert 0 <= on_disk["translation_accuracy"] <= 1 and on_disk["cluster_domain"]
    assert verified_asset(DEFAULT_TUNIT, folder=out) == path
    model = load_tunit(path)
    assert set(model.networks) == {"G_EMA", "C", "C_EMA"}
    y = translate(model.generator, torch.zeros(2, 3, 16, 16), torch.zeros(4))
    assert y.shape == (2, 3, 16, 16) and y.abs().max() <= 1
    from PIL import Image

    with Image.open(out / GRID_NAME) as im:  # rows: 1 face per domain; columns: input + one per cluster style
        assert im.size[1] == 16 * len(DOMAINS)
        assert im.size[0] == 16 * (1 + len(m["held_out"]["cluster_domain"]))


@pytest.mark.skipif(not (ASSETS_DIR / DEFAULT_TUNIT).is_file(), reason="no embedded TUNIT yet")
def test_embedded_tunit_loads_and_translates():
    path = verified_asset(DEFAULT_TUNIT, what="embedded TUNIT")
    model = load_tunit(path)
    info = json.loads((ASSETS_DIR / "tunit.json").read_text())
    size = info["train_config"]["size"]
    styles = torch.load(path, map_location="cpu", weights_only=True)["extras"]["cluster_styles"]
    assert set(styles) == set(info["cluster_domain"])
    s = torch.tensor(list(styles.values()))  # [K, sty_dim]
    y = translate(model.generator, torch.zeros(1, 3, size, size), s)
    assert y.shape == (len(styles), 3, size, size) and y.abs().max() <= 1
