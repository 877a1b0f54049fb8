"""engine.files.checkpoints.load_module: the one loader of the small models' own files (estimator, domain
classifier, encoder), and what it refuses."""
from __future__ import annotations

import pytest
import torch

from engine.errors import ModelFormatError
from engine.models.domains import DomainClassifier, DomainConfig, domains_checkpoint, load_domains, save_domains
from engine.models.encoder import Encoder, EncoderConfig, encoder_checkpoint, load_encoder
from engine.models.estimator import AttributeEstimator, EstimatorConfig, estimator_checkpoint, load_estimator

ESTIMATOR = EstimatorConfig(output_names=("age", "smile"), binary=("smile",), input_size=32, widths=(4, 4, 4, 4),
                            blocks=(1, 1, 1, 1), stem_width=4, feature_dim=8)
DOMAINS = DomainConfig(domain_names=("photo", "toon"), input_size=32, widths=(4, 4, 4, 4), stem_width=4)
ENCODER = EncoderConfig(resolution=8, num_ws=4, w_dim=8, channels=(4, 4), head_channels=4, hidden=8)


def test_every_small_model_round_trips_with_its_metadata(tmp_path):
    model = DomainClassifier(DOMAINS, seed=1).eval()
    save_domains(tmp_path / "d.pt", model, extras={"note": "x"})
    back = load_domains(tmp_path / "d.pt")
    assert back.cfg == DOMAINS and back.extras == {"note": "x"} and not back.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    est = load_estimator(estimator_checkpoint(AttributeEstimator(ESTIMATOR, seed=2), extras={"step": 3}))
    assert est.cfg == ESTIMATOR and est.extras == {"step": 3}
    enc = load_encoder(encoder_checkpoint(Encoder(ENCODER, seed=3), info={"kimg": 1}))
    assert enc.cfg == ENCODER and enc.info == {"kimg": 1}


def test_non_finite_weights_and_bad_metadata_are_refused_for_every_model():
    good = {"domains": domains_checkpoint(DomainClassifier(DOMAINS, seed=1)),
            "estimator": estimator_checkpoint(AttributeEstimator(ESTIMATOR, seed=2))}
    for name, load in (("domains", load_domains), ("estimator", load_estimator)):
        ckpt = good[name]
        key = next(iter(ckpt["state_dict"]))
        nan = {**ckpt, "state_dict": {**ckpt["state_dict"], key: torch.full_like(ckpt["state_dict"][key], torch.nan)}}
        with pytest.raises(ModelFormatError, match=r"dict: the weights hold non-finite values \(NaN or infinity\)"):
            load(nan)
        with pytest.raises(ModelFormatError, match=r"dict: 'extras' must be a dictionary, got a list of 1 items"):
            load({**ckpt, "extras": ["x"]})
        with pytest.raises(ModelFormatError, match=r"invalid architecture: input_size must be a whole number"):
            load({**ckpt, "arch": {**ckpt["arch"], "input_size": "32"}})


def test_a_models_own_check_runs_after_loading():
    ckpt = encoder_checkpoint(Encoder(ENCODER, seed=3))
    flat = {**ckpt, "state_dict": {**ckpt["state_dict"], "w_scale": torch.zeros(8)}}
    with pytest.raises(ModelFormatError, match=r"^encoder dict: its w_scale is not positive everywhere$"):
        load_encoder(flat)


def test_files_are_read_by_the_one_safe_reader(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a model at all")
    with pytest.raises(ModelFormatError, match="junk.pt is not a model file"):
        load_estimator(tmp_path / "junk.pt")
    with pytest.raises(ModelFormatError, match="no such file"):
        load_domains(tmp_path / "missing.pt")
