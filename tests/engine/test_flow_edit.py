"""StyleFlow edits over a fake invertible conditional flow, and the flow's training data (sampled and released)."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from engine.algorithms.flow_edit import (
    ATTRIBUTES,
    CHANGED_ROWS,
    COND_DIM,
    CONDITION_NAMES,
    LIGHTING_ROWS,
    AttributeEdit,
    apply_edits,
    attribute_index,
    attribute_mask,
    blend_lighting,
    decode,
    edit_attribute,
    encode,
    lighting_mask,
    merge_edit,
    set_attribute,
    set_lighting,
    slider_from_target,
    slider_target,
    slider_value,
)
from engine.models.estimator import AttributeEstimator, EstimatorConfig
from engine.models.stylegan2 import Generator, GeneratorConfig
from engine.synth.params import CONDITION_NAMES as ESTIMATOR_NAMES
from engine.train.flow_data import (
    FlowDataError,
    load_flow_data,
    read_styleflow_attributes,
    read_styleflow_data,
    read_styleflow_latents,
    read_styleflow_lighting,
    sample_flow_data,
    save_flow_data,
    styleflow_lighting_presets,
)
from engine.train.release.generator import quantised

NUM_WS, W_DIM = 18, 8


class FakeFlow:
    """z = (w - cond @ A) * exp(-tanh(cond @ S)), row-wise; the faithful mode adds tiny RNG noise (like the CNF's
    divergence noise nudging x), so only seeded calls reproduce."""

    def __init__(self, *, scale: bool = True, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.A = torch.randn(COND_DIM, W_DIM, generator=g)  # [17, w_dim]
        self.S = torch.randn(COND_DIM, W_DIM, generator=g) * 0.05 if scale else torch.zeros(COND_DIM, W_DIM)
        self.calls = 0

    def _noise(self, x, fast):
        return x if fast else x + 1e-6 * torch.randn_like(x)

    def w_to_z(self, w, cond, *, fast=False):
        self.calls += 1
        return self._noise((w - (cond @ self.A)[:, None]) * torch.exp(-torch.tanh(cond @ self.S))[:, None], fast)

    def z_to_w(self, z, cond, *, fast=False):
        self.calls += 1
        return self._noise(z * torch.exp(torch.tanh(cond @ self.S))[:, None] + (cond @ self.A)[:, None], fast)


def face(seed: int = 1, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A W+ latent [B, 18, w_dim] and a plausible condition [B, 17]."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(batch, NUM_WS, W_DIM, generator=g)
    attrs = torch.tensor([0.3, 0.0, 5.0, -3.0, 0.1, 0.2, 30.0, 0.7]).expand(batch, -1)
    light = torch.rand(batch, 9, generator=g) - 0.3
    return w, torch.cat([light, attrs], dim=1)


def test_condition_layout_and_styleflow_sliders():
    assert CONDITION_NAMES[:9] == tuple(f"sh{i}" for i in range(9)) and CONDITION_NAMES[9:] == ATTRIBUTES
    assert [attribute_index(a) for a in ATTRIBUTES] == list(range(9, 17))
    assert attribute_index("smile") == attribute_index("expression") == 16
    with pytest.raises(ValueError, match="unknown attribute"):
        attribute_index("hat")
    assert slider_value("age", 0) == 0 and slider_value("age", 80) == 65 and slider_value("yaw", 40) == 0
    assert slider_target("glasses", 1.0, 0.0) == 2.5  # degree 2.5: values may leave the slider range
    assert slider_target("age", 40.0, 30.0) == pytest.approx(30 + 0.93 * 10)
    assert slider_from_target("beard", slider_target("beard", 0.8, 0.1), 0.1) == pytest.approx(0.8)


def test_masks_follow_styleflow_and_clip_to_the_generator_rows():
    assert attribute_mask("gender", 18).nonzero().flatten().tolist() == list(range(8))
    assert attribute_mask("glasses", 18).nonzero().flatten().tolist() == [2, 3]
    assert attribute_mask("beard", 18).nonzero().flatten().tolist() == [5, 6, 7, 8, 9]
    assert lighting_mask(18).nonzero().flatten().tolist() == [7, 8, 9, 10, 11]
    assert lighting_mask(10).nonzero().flatten().tolist() == [7, 8, 9]  # 64 px: rows 0..9
    assert attribute_mask("gender", 6).tolist() == [True] * 6
    wide = attribute_mask("age", 20)  # 2048 px: the two extra rows never change
    assert wide.shape == (20,) and wide.nonzero().flatten().tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="only 6 rows"):
        lighting_mask(6)


@pytest.mark.parametrize("name", [*ATTRIBUTES, "lighting"])
def test_edit_changes_only_the_masked_rows_and_keeps_the_rest_bit_identical(name):
    flow = FakeFlow()
    w, cond = face()
    if name == "lighting":
        target, mask, rows = set_lighting(cond, torch.full((9,), 0.4)), lighting_mask(NUM_WS), LIGHTING_ROWS
    else:
        target = set_attribute(cond, name, cond[0, attribute_index(name)] + 0.5)
        mask, rows = attribute_mask(name, NUM_WS), CHANGED_ROWS[name]
    w_before = w.clone()
    w_new, z_new = edit_attribute(flow, w, None, cond, target, rows_mask=mask)
    assert torch.equal(w, w_before)  # inputs are not mutated
    kept = [i for i in range(NUM_WS) if i not in rows]
    assert torch.equal(w_new[:, kept], w[:, kept])
    assert (w_new[:, list(rows)] - w[:, list(rows)]).abs().amax(dim=-1).min() > 1e-3
    assert torch.equal(z_new, encode(flow, w_new, target))  # the next edit's z


def test_an_edit_moves_its_condition_and_leaves_the_others():
    flow = FakeFlow(scale=False)  # w = z + cond @ A: each condition has its own axis of w below
    flow.A = torch.zeros(COND_DIM, W_DIM)
    flow.A[attribute_index("age"), 0], flow.A[attribute_index("gender"), 1], flow.A[0, 2] = 0.05, 1.0, 1.0
    w, cond = face()
    w_new, _ = edit_attribute(flow, w, None, cond, set_attribute(cond, "age", 50.0),
                              rows_mask=attribute_mask("age", NUM_WS), fast=True)
    delta = w_new - w  # [1, 18, w_dim]
    assert torch.allclose(delta[0, 4:8, 0], torch.full((4,), 0.05 * (50.0 - 30.0)), atol=1e-5)  # age moved
    assert delta[0, :, 1:].abs().max() < 1e-5  # gender, lighting and the other dimensions stay
    assert torch.equal(delta[0, :4], torch.zeros(4, W_DIM)) and torch.equal(delta[0, 8:], torch.zeros(10, W_DIM))


def test_encode_decode_round_trip_and_shape_checks():
    flow = FakeFlow()
    w, cond = face(batch=3)
    assert torch.allclose(decode(flow, encode(flow, w, cond), cond), w, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[B, 17\]"):
        encode(flow, w, cond[:, :16])
    with pytest.raises(ValueError, match="batch"):
        encode(flow, w, cond[:2])
    with pytest.raises(ValueError, match="rows_mask"):
        edit_attribute(flow, w, None, cond, cond, rows_mask=torch.ones(NUM_WS))


def test_set_attribute_and_lighting_overwrite_without_mutating():
    _, cond = face(batch=2)
    before = cond.clone()
    once = set_attribute(cond, "age", 40.0)
    twice = set_attribute(set_attribute(cond, "age", 10.0), "age", 40.0)
    assert torch.equal(once, twice) and torch.equal(cond, before)
    assert once[:, 15].tolist() == [40.0, 40.0] and torch.equal(once[:, :15], cond[:, :15])
    per_face = set_attribute(cond, "smile", torch.tensor([0.1, 0.9]))
    assert per_face[:, 16].tolist() == pytest.approx([0.1, 0.9])
    lit = set_lighting(cond, torch.arange(9.0))
    assert torch.equal(lit[:, :9], torch.arange(9.0).expand(2, -1)) and torch.equal(lit[:, 9:], cond[:, 9:])
    with pytest.raises(ValueError, match="lighting must be"):
        set_lighting(cond, torch.zeros(8))


def test_lighting_blend_formula():
    g = torch.Generator().manual_seed(0)
    orig, presets = torch.randn(2, 9, generator=g), torch.randn(6, 9, generator=g)
    v = [0.0, 0.5, 0.0, 0.25, 1.0, 0.0]
    expected = orig.clone()
    for j in range(6):
        expected = expected + v[j] * (presets[j] - orig)
    assert torch.allclose(blend_lighting(orig, presets, v), expected, atol=1e-6)
    assert torch.equal(blend_lighting(orig, presets, [0.0] * 6), orig)
    assert torch.allclose(blend_lighting(orig[:1], presets, [0, 0, 1, 0, 0, 0]), presets[2:3], atol=1e-6)
    with pytest.raises(ValueError, match="weights"):
        blend_lighting(orig, presets, [1.0] * 5)


def edit_list():
    return (AttributeEdit("attribute", "age", 55.0), AttributeEdit("lighting", 1, 0.6),
            AttributeEdit("attribute", "smile", 0.1), AttributeEdit("lighting", 0, 0.3),
            AttributeEdit("attribute", "age", 20.0))


def test_apply_edits_is_deterministic_and_equals_editing_step_by_step():
    flow = FakeFlow()
    w0, cond0 = face()
    presets = torch.randn(6, 9, generator=torch.Generator().manual_seed(5))
    rng = torch.get_rng_state()
    w_a, cond_a = apply_edits(flow, w0, cond0, edit_list(), presets=presets)
    w_b, cond_b = apply_edits(flow, w0, cond0, edit_list(), presets=presets)
    assert torch.equal(w_a, w_b) and torch.equal(cond_a, cond_b)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is left alone

    # the editor's path: one edit_attribute per edit, z carried over from the previous edit
    w, cond, z = w0, cond0, None
    target = set_attribute(cond, "age", 55.0)
    w, z = edit_attribute(flow, w, z, cond, target, rows_mask=attribute_mask("age", NUM_WS))
    cond = target
    target = set_lighting(cond, blend_lighting(cond0[:, :9], presets, [0, 0.6, 0, 0, 0, 0]))
    w, z = edit_attribute(flow, w, z, cond, target, rows_mask=lighting_mask(NUM_WS))
    cond = target
    target = set_attribute(cond, "expression", 0.1)
    w, z = edit_attribute(flow, w, z, cond, target, rows_mask=attribute_mask("expression", NUM_WS))
    cond = target
    target = set_lighting(cond, blend_lighting(cond0[:, :9], presets, [0.3, 0.6, 0, 0, 0, 0]))  # weights persist
    w, z = edit_attribute(flow, w, z, cond, target, rows_mask=lighting_mask(NUM_WS))
    cond = target
    target = set_attribute(cond, "age", 20.0)
    w, z = edit_attribute(flow, w, z, cond, target, rows_mask=attribute_mask("age", NUM_WS))
    assert torch.equal(w, w_a) and torch.equal(target, cond_a)
    assert cond_a[0, 15] == 20.0 and cond_a[0, 16] == pytest.approx(0.1)
    assert torch.equal(cond_a[:, 9:15], cond0[:, 9:15])
    assert not torch.equal(w_a, w0)


def test_apply_edits_reset_and_errors():
    flow = FakeFlow()
    w0, cond0 = face()
    w, cond = apply_edits(flow, w0, cond0, ())
    assert torch.equal(w, w0) and torch.equal(cond, cond0) and flow.calls == 0
    with pytest.raises(ValueError, match="presets"):
        apply_edits(flow, w0, cond0, (AttributeEdit("lighting", 0, 1.0),))
    with pytest.raises(ValueError, match="does not exist"):
        apply_edits(flow, w0, cond0, (AttributeEdit("lighting", 6, 1.0),), presets=torch.zeros(6, 9))


def test_locked_attributes_are_pulled_back_to_their_held_value():
    flow = FakeFlow(scale=False)  # w = z + cond @ A: an edit moves its rows along one direction per condition entry
    w0, cond0 = face()
    g = attribute_index("glasses")
    a_g = flow.A[g]  # [w_dim]

    def measure(w):  # a reader in which a gender edit leaks into glasses (rows 2-3 are in both masks)
        reading = cond0.clone()
        shift = (w[:, 2:4] - w0[:, 2:4]).mean(dim=1) @ a_g / a_g.dot(a_g)  # [B]
        reading[:, g] = cond0[:, g] + shift
        return reading

    edits = (AttributeEdit("attribute", "gender", 0.9),)
    free, _ = apply_edits(flow, w0, cond0, edits)
    held, cond = apply_edits(flow, w0, cond0, edits, locks=("glasses",), measure=measure)
    assert abs(measure(free)[0, g] - cond0[0, g]) > 0.05  # without the lock, glasses drift
    assert measure(held)[0, g] == pytest.approx(cond0[0, g].item(), abs=1e-4)  # with it, they are back
    assert torch.equal(held[:, 4:], free[:, 4:])  # only the locked attribute's rows were corrected
    assert torch.equal(cond, set_attribute(cond0, "gender", 0.9))

    # an edit of the locked attribute itself goes through: its new value is the one held from then on
    own = (AttributeEdit("attribute", "glasses", 0.8),)
    w_own, _ = apply_edits(flow, w0, cond0, own, locks=("glasses",), measure=measure)
    assert torch.equal(w_own, apply_edits(flow, w0, cond0, own)[0])
    with pytest.raises(ValueError, match="measure"):
        apply_edits(flow, w0, cond0, edits, locks=("glasses",))
    with pytest.raises(ValueError, match="attribute"):
        apply_edits(flow, w0, cond0, edits, locks=("freckles",), measure=measure)


def test_merge_edit_replaces_a_drag_of_the_same_quantity():
    age1, age2 = AttributeEdit("attribute", "age", 40.0), AttributeEdit("attribute", "age", 45.0)
    beard = AttributeEdit("attribute", "beard", 0.5)
    assert merge_edit((), age1) == (age1,)
    assert merge_edit((age1,), age2) == (age2,)
    assert merge_edit((age1, beard), age2) == (age1, beard, age2)  # not consecutive: a new edit
    light = merge_edit(merge_edit((age1,), AttributeEdit("lighting", 2, 0.1)), AttributeEdit("lighting", 2, 0.7))
    assert light == (age1, AttributeEdit("lighting", 2, 0.7))
    assert merge_edit(light, AttributeEdit("lighting", 3, 0.7))[-2:] == (light[-1], AttributeEdit("lighting", 3, 0.7))
    assert AttributeEdit("attribute", "smile", 1).key == "expression"
    assert AttributeEdit.from_dict(age1.to_dict()) == age1
    for bad in (("attribute", "", 1.0), ("attribute", 3, 1.0), ("lighting", "left", 1.0), ("lighting", -1, 1.0),
                ("pose", "yaw", 1.0), ("attribute", "age", float("nan"))):
        with pytest.raises(ValueError):
            AttributeEdit(*bad)


# --- StyleFlow's released data files ---------------------------------------------------------------------------

N = 5


def write_released(folder, *, protocol=pickle.DEFAULT_PROTOCOL, n=N):
    g = np.random.default_rng(0)
    attrs = g.random((n, 8, 1))  # float64, like attributes.npy
    light = g.random((n, 1, 9, 1, 1)).astype(np.float32)
    latents = [g.standard_normal((1, 18, 16)).astype(np.float32) for _ in range(n)]
    np.save(folder / "attributes.npy", attrs)
    np.save(folder / "light.npy", light)
    with open(folder / "sg2latents.pickle", "wb") as f:
        pickle.dump({"Latent": latents}, f, protocol=protocol)
    return attrs, light, latents


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_reads_styleflow_released_files(tmp_path, protocol):
    attrs, light, latents = write_released(tmp_path, protocol=protocol)
    assert np.array_equal(read_styleflow_attributes(tmp_path / "attributes.npy"), attrs[:, :, 0].astype(np.float32))
    assert np.array_equal(read_styleflow_lighting(tmp_path / "light.npy"), light.reshape(N, 9))
    w = read_styleflow_latents(tmp_path / "sg2latents.pickle")
    assert w.shape == (N, 18, 16) and w.dtype == np.float32 and np.array_equal(w, np.concatenate(latents))
    data = read_styleflow_data(tmp_path)
    assert np.array_equal(data["w"], w)
    cond = np.concatenate([light.reshape(N, 9), attrs.reshape(N, 8)], axis=1).astype(np.float32)
    assert np.array_equal(data["cond"], cond)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_latent_pickle_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "sg2latents.pickle"
    path.write_bytes(pickle.dumps({"Latent": [np.zeros((1, 18, 4), np.float32), _Exploit(marker)]}))
    with pytest.raises(FlowDataError, match="refusing.*(posix|os|nt)\\.system"):
        read_styleflow_latents(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"Latent": [np.zeros((1, 18, 4), np.float32)], "x": pickle.PickleError}))
    with pytest.raises(FlowDataError, match="refusing"):
        read_styleflow_latents(path)


def test_released_files_with_a_wrong_layout_are_clear_errors(tmp_path):
    write_released(tmp_path)
    np.save(tmp_path / "light.npy", np.zeros((N + 1, 1, 9, 1, 1), np.float32))
    with pytest.raises(FlowDataError, match="same images"):
        read_styleflow_data(tmp_path)
    np.save(tmp_path / "attributes.npy", np.zeros((N, 7, 1)))
    with pytest.raises(FlowDataError, match="8 values per image"):
        read_styleflow_attributes(tmp_path / "attributes.npy")
    np.save(tmp_path / "attributes.npy", np.array([{"a": 1}] * N, dtype=object))
    with pytest.raises(FlowDataError, match="not a readable"):
        read_styleflow_attributes(tmp_path / "attributes.npy")
    (tmp_path / "sg2latents.pickle").write_bytes(pickle.dumps({"latents": []}))
    with pytest.raises(FlowDataError, match="'Latent'"):
        read_styleflow_latents(tmp_path / "sg2latents.pickle")
    (tmp_path / "sg2latents.pickle").write_bytes(b"\x80\x04garbage")
    with pytest.raises(FlowDataError, match="sg2latents.pickle cannot be read: the file is damaged or truncated"):
        read_styleflow_latents(tmp_path / "sg2latents.pickle")


def test_styleflow_lighting_presets_are_its_documented_rows():
    light = np.arange(1000 * 9, dtype=np.float32).reshape(1000, 9)
    presets = styleflow_lighting_presets(light)
    assert presets.shape == (6, 9) and presets[:, 0].tolist() == [9 * r for r in (8, 33, 641, 547, 28, 34)]
    with pytest.raises(FlowDataError, match="presets"):
        styleflow_lighting_presets(light[:600])


def test_train_flow_npy_latents_and_npz_round_trip(tmp_path):
    latents = np.random.default_rng(1).standard_normal((N, 1, 18, 16)).astype(np.float32)
    np.save(tmp_path / "latents.npy", latents)
    assert np.array_equal(read_styleflow_latents(tmp_path / "latents.npy"), latents[:, 0])
    data = {"w": latents[:, 0], "cond": np.random.default_rng(2).random((N, 17))}
    back = load_flow_data(save_flow_data(tmp_path / "d" / "flow.npz", data))
    assert np.array_equal(back["w"], data["w"]) and np.array_equal(back["cond"], data["cond"].astype(np.float32))
    assert back["cond"].dtype == np.float32
    np.savez(tmp_path / "other.npz", w=data["w"], cond=data["cond"], cond_names=np.array(ESTIMATOR_NAMES))
    with pytest.raises(FlowDataError, match="condition columns"):
        load_flow_data(tmp_path / "other.npz")
    with pytest.raises(FlowDataError, match="cond"):
        save_flow_data(tmp_path / "bad.npz", {"w": data["w"], "cond": data["cond"][:, :16]})


# --- sampling from a generator --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_models():
    G = Generator(GeneratorConfig(img_resolution=16, channels=(16, 16, 16), z_dim=16, w_dim=16, mapping_layers=2),
                  seed=1).eval()
    cfg = EstimatorConfig(output_names=ESTIMATOR_NAMES, binary=("gender", "glasses"), input_size=16, widths=(8, 8),
                          blocks=(1, 1), stem_width=8, feature_dim=16)
    return G, AttributeEstimator(cfg, seed=2).eval()


@pytest.mark.usefixtures("one_thread")
def test_sample_flow_data_shapes_determinism_and_condition_order(tiny_models):
    G, est = tiny_models
    seen = []
    data = sample_flow_data(G, est, 7, seed=3, batch=3, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(3, 7), (6, 7), (7, 7)]
    assert data["w"].shape == (7, G.num_ws, 16) and data["cond"].shape == (7, 17)
    assert data["w"].dtype == data["cond"].dtype == np.float32
    again = sample_flow_data(G, est, 7, seed=3, batch=3)
    assert all(np.array_equal(data[k], again[k]) for k in ("w", "cond"))
    other_batch = sample_flow_data(G, est, 7, seed=3, batch=7)
    assert np.allclose(other_batch["w"], data["w"], atol=1e-5) and np.allclose(other_batch["cond"], data["cond"],
                                                                               atol=1e-4)
    assert not np.allclose(sample_flow_data(G, est, 7, seed=4, batch=7)["w"], data["w"])

    with torch.no_grad():
        z = torch.randn(7, G.z_dim, generator=torch.Generator().manual_seed(3))
        ws = G.mapping(z)
        pred = est.predict(quantised(G.synthesis(ws, noise_mode="const")))
    assert np.allclose(data["w"], ws.numpy(), atol=1e-5)
    flow_order = [f"sh{i}" for i in range(9)] + ["gender", "glasses", "yaw", "pitch", "baldness", "beard", "age",
                                                 "smile"]
    expected = torch.stack([pred[name] for name in flow_order], dim=1).numpy()
    assert np.allclose(data["cond"], expected, atol=1e-4)


def test_sample_flow_data_needs_every_condition_from_the_estimator(tiny_models):
    G, _ = tiny_models
    cfg = EstimatorConfig(output_names=ESTIMATOR_NAMES[:-1], input_size=16, widths=(8, 8), blocks=(1, 1),
                          stem_width=8, feature_dim=16)
    with pytest.raises(ValueError, match="does not predict \\['sh8'\\]"):
        sample_flow_data(G, AttributeEstimator(cfg).eval(), 2, seed=0, batch=2)
    with pytest.raises(ValueError, match="eval"):
        sample_flow_data(G, AttributeEstimator(cfg.__class__(output_names=ESTIMATOR_NAMES, input_size=16,
                                                             widths=(8, 8), blocks=(1, 1), stem_width=8,
                                                             feature_dim=16)).train(), 2, seed=0, batch=2)
