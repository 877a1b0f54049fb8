"""The restricted pickle readers and the TensorFlow converter, on pickles written the way NVIDIA writes them.

The pickles are produced by ``nvlabs_pickle_writer`` from the shared ``nvlabs_s32`` fixture's state dicts,
without NVIDIA code; their embedded module sources would create a marker file if anyone executed them.
"""
from __future__ import annotations

import builtins
import io
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import load_discriminator, load_generator
from engine.convert import tf_legacy
from engine.errors import ModelFormatError
from engine.files import pickles
from engine.files.pickles import NetworkRecord, TFNetwork, TFPickle

from . import nvlabs_pickle_writer as writer

IMAGE_TOL = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def fx(reference_dir):
    return torch.load(reference_dir / "stylegan2" / "nvlabs_s32.pt", weights_only=True)


@pytest.fixture(scope="module")
def marker(tmp_path_factory) -> Path:
    """Created only if an embedded module source is ever executed."""
    return tmp_path_factory.mktemp("embedded-source") / "EXECUTED"


@pytest.fixture(scope="module")
def written(fx, marker):
    """Pickle bytes built once per (kind, protocol, static kwargs) for the whole module."""
    cache: dict = {}
    ck, cfg = fx["checkpoint"], fx["config"]
    src = writer.module_source(marker)

    def build(kind: str, protocol: int = 4, **static) -> bytes:
        key = (kind, protocol, repr(static))
        if key not in cache:
            if kind == "nvlabs":
                cache[key] = writer.nvlabs_pickle_bytes(ck["G_ema"], ck["D"], cfg["G_init_kwargs"],
                                                        cfg["D_init_kwargs"], protocol=protocol, module_src=src)
            else:
                cache[key] = writer.tf_pickle_bytes(ck["G_ema"], ck["D"], protocol=protocol, module_src=src,
                                                    **static)
        return cache[key]

    return build


def _assert_same_state(actual: dict, expected: dict):
    assert list(actual) == list(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype and actual[key].shape == value.shape, key
        assert torch.equal(actual[key], value), key


def _source(kind: str, data: bytes, tmp_path: Path):
    if kind == "path":
        path = tmp_path / "network-snapshot.pkl"
        path.write_bytes(data)
        return path
    if kind == "str":
        path = tmp_path / "network-snapshot.pkl"
        path.write_bytes(data)
        return str(path)
    if kind == "file":
        return io.BytesIO(data)
    return data


# ---------------------------------------------------------------------------------------------------------------
# NVIDIA PyTorch pickles


@pytest.mark.parametrize("protocol,kind", [(2, "bytes"), (3, "path"), (4, "file"), (4, "str")])
def test_nvlabs_pickle_gives_the_fixture_state_dicts(fx, written, marker, tmp_path, protocol, kind):
    data = pickles.read_nvlabs_pickle(_source(kind, written("nvlabs", protocol), tmp_path))
    ck, cfg = fx["checkpoint"], fx["config"]
    assert set(data) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    for name in ("G_ema", "G"):
        rec = data[name]
        assert isinstance(rec, NetworkRecord)
        _assert_same_state(rec.state_dict, ck["G_ema"])
        assert rec.init_kwargs == cfg["G_init_kwargs"]
        assert rec.class_name == "Generator" and rec.init_args == ()
    _assert_same_state(data["D"].state_dict, ck["D"])
    assert data["D"].init_kwargs == cfg["D_init_kwargs"]
    assert not marker.exists(), "embedded module source was executed"


def test_nvlabs_record_details(written, marker):
    data = pickles.read_nvlabs_pickle(written("nvlabs"))
    g = data["G_ema"]
    assert g.module_name_hint == writer.MODULE_DOC
    assert g.submodule_classes[""] == "Generator"
    assert g.submodule_classes["synthesis.b8.conv0"] == "SynthesisLayer"
    assert g.submodule_classes["mapping.fc1"] == "FullyConnectedLayer"
    assert data["D"].submodule_classes["b4.mbstd"] == "MinibatchStdLayer"
    # non-persistent buffers and None parameters are left out exactly like Module.state_dict() does
    assert not any(k.endswith("scratch") for k in g.state_dict)
    assert "b32.skip.bias" not in data["D"].state_dict
    # plain Python values: EasyDicts became dicts, all the way down
    assert type(g.init_kwargs) is dict and type(g.init_kwargs["mapping_kwargs"]) is dict
    assert type(data["training_set_kwargs"]) is dict
    assert data["training_set_kwargs"] == writer.TRAINING_SET_KWARGS
    pipe = data["augment_pipe"]
    assert pipe.class_name == "AugmentPipe" and float(pipe.state_dict["p"]) == 0.25
    assert all(not t.requires_grad and type(t) is torch.Tensor for t in g.state_dict.values())
    assert not marker.exists()


def test_numpy1_global_names_are_understood(fx, written, marker):
    """Files written with numpy 1.x name ``numpy.core.multiarray``; protocol 2 spells globals as plain text."""
    raw = written("nvlabs", 2)
    assert b"numpy._core.multiarray\nscalar" in raw
    old = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    _assert_same_state(pickles.read_nvlabs_pickle(old)["G_ema"].state_dict, fx["checkpoint"]["G_ema"])


def test_read_pickle_sniffs_both_kinds(written, marker):
    kind, content = pickles.read_pickle(written("nvlabs"))
    assert kind == "nvlabs-pickle" and isinstance(content["G_ema"], NetworkRecord)
    kind, content = pickles.read_pickle(written("tf"))
    assert kind == "tf-pickle" and isinstance(content, TFPickle) and isinstance(content, tuple)
    assert not marker.exists()


def test_readers_refuse_the_other_kind_and_foreign_pickles(written, marker):
    with pytest.raises(ModelFormatError, match="legacy TensorFlow"):
        pickles.read_nvlabs_pickle(written("tf"))
    with pytest.raises(ModelFormatError, match="NVIDIA PyTorch network pickle"):
        pickles.read_tf_pickle(written("nvlabs"))
    with pytest.raises(ModelFormatError, match=r"neither .* top-level object is a dictionary with keys a, b$"):
        pickles.read_pickle(pickle.dumps({"a": 1, "b": [1, 2]}))
    with pytest.raises(ModelFormatError, match="top-level object is a list of 2 items"):
        pickles.read_pickle(pickle.dumps([1, 2.0]))
    with writer.nvidia_module_names():
        lone = pickle.dumps(writer.augment_pipe_object(""))
    with pytest.raises(ModelFormatError, match="a single network object of class 'AugmentPipe'"):
        pickles.read_pickle(lone)


def test_nvlabs_pickle_loads_through_load_generator(fx, written, marker, tmp_path):
    path = tmp_path / "stylegan2-tiny.pkl"
    path.write_bytes(written("nvlabs"))
    case = fx["cases"]["plain_const"]
    G = load_generator(path)
    with torch.no_grad():
        image = G.synthesis(G.mapping(case["inputs"]["z"]), noise_mode="const")
    torch.testing.assert_close(image, case["expected"]["image"], **IMAGE_TOL)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------------
# Refusals: code in the pickle, damaged files


class _Evil:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _evil_cases(marker: Path):
    return {
        "os.system": (os.system, (f"touch {marker}",), f"{os.system.__module__}.system"),
        "builtins.eval": (builtins.eval, (f"open({str(marker)!r}, 'w').close()",), "builtins.eval"),
        "subprocess.Popen": (subprocess.Popen, (["touch", str(marker)],), "subprocess.Popen"),
        "builtins.exec": (builtins.exec, (f"open({str(marker)!r}, 'w').close()",), "builtins.exec"),
    }


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen", "builtins.exec"])
def test_malicious_reduce_is_refused_without_side_effects(tmp_path, name, protocol):
    marker = tmp_path / "PWNED"
    func, args, global_name = _evil_cases(marker)[name]
    raw = pickle.dumps({"G_ema": _Evil(func, args)}, protocol=protocol)
    with pytest.raises(ModelFormatError, match=f"refusing to load .*'{global_name}'") as info:
        pickles.read_pickle(raw)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_malicious_object_inside_a_network_is_refused(fx, tmp_path):
    """A payload hidden deep inside an otherwise valid network state is refused too."""
    marker = tmp_path / "PWNED"
    ck = dict(fx["checkpoint"]["G_ema"])
    obj = writer.network_object(ck, {}, discriminator=False, module_src="")
    obj.meta["state"]["_modules"]["mapping"].meta["state"]["weight_gain"] = _Evil(os.system, (f"touch {marker}",))
    with writer.nvidia_module_names():
        raw = pickle.dumps({"G_ema": obj}, protocol=4)
    with pytest.raises(ModelFormatError, match="system"):
        pickles.read_nvlabs_pickle(raw)
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [
    ("evil_plugin", "payload"), ("torch", "load"), ("numpy", "load"), ("torch_utils.persistence", "persistent_class"),
    ("dnnlib.util", "call_func_by_name"), ("builtins", "getattr"), ("__builtin__", "open"),
    ("copyreg", "_reconstructor"),
])
def test_globals_outside_the_allow_list_are_refused(module, name):
    raw = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\nX\x03\x00\x00\x00argq\x00\x85q\x01R."
    shown = "builtins" if module == "__builtin__" else module
    with pytest.raises(ModelFormatError, match=f"the pickle asks for the global '{shown}.{name}'"):
        pickles.read_pickle(raw)


def test_persistent_ids_are_refused():
    class External(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage-0" if isinstance(obj, str) and obj == "external" else None

    buf = io.BytesIO()
    External(buf, protocol=2).dump({"G_ema": "external"})
    with pytest.raises(ModelFormatError, match="persistent id"):
        pickles.read_pickle(buf.getvalue())


@pytest.mark.parametrize("cut", [0.5, 0.9, -1, 20])
def test_truncated_pickles_are_reported(written, marker, cut):
    raw = written("nvlabs")
    end = int(len(raw) * cut) if isinstance(cut, float) else (cut if cut > 0 else len(raw) + cut)
    with pytest.raises(ModelFormatError, match="cannot be read: the file is truncated"):
        pickles.read_nvlabs_pickle(raw[:end])
    assert not marker.exists()


@pytest.mark.parametrize("seed", range(6))
def test_random_bytes_are_reported(seed):
    rng = np.random.default_rng(seed)
    raw = rng.bytes(4096)
    if seed % 2:
        raw = b"\x80\x04" + raw  # looks like a pickle header: the garbage is parsed further
    with pytest.raises(ModelFormatError):
        pickles.read_pickle(raw)


@pytest.mark.parametrize("old,new,message", [
    (b"l\xfc\x9cF\xf9 j\xa8P\x19", b"l\xfc\x9cF\xf9 j\xa8P\x18", "cannot be read safely"),
    (b"ctorch\nFloatStorage\n", b"cshutil\ncopyfileobj\n", "cannot be read safely.*shutil.copyfileobj"),
])
def test_tensor_storage_blobs_are_checked(written, marker, old, new, message):
    """Each storage is a nested legacy torch.save blob: a damaged one, or one asking for code, is refused."""
    raw = written("nvlabs", 4)
    assert len(old) == len(new) and old in raw
    with pytest.raises(ModelFormatError, match=f"tensor storage inside the pickle {message}"):
        pickles.read_pickle(raw.replace(old, new, 1))


def test_empty_and_zip_inputs(tmp_path):
    with pytest.raises(ModelFormatError, match="is empty"):
        pickles.read_pickle(b"")
    path = tmp_path / "checkpoint.pt"
    torch.save({"a": torch.zeros(1)}, path)
    with pytest.raises(ModelFormatError, match="checkpoint.pt is a ZIP archive"):
        pickles.read_pickle(path)


# ---------------------------------------------------------------------------------------------------------------
# Legacy TensorFlow pickles


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_tf_pickle_converts_to_the_fixture(fx, written, marker, protocol):
    tf = pickles.read_tf_pickle(written("tf", protocol, g_static={"fmap_base": 512, "resolution": 32},
                                          d_static={"mbstd_group_size": 4}))
    assert isinstance(tf.Gs, TFNetwork) and set(tf.Gs.components) == {"mapping", "synthesis"}
    assert tf.Gs.build_func_name.endswith("G_main") and tf.Gs.version == 4
    assert type(tf.Gs.static_kwargs) is dict and tf.Gs.static_kwargs["fmap_base"] == 512
    assert tf.Gs.components["synthesis"].variables["4x4/Conv/noise_strength"].shape == ()
    g_sd, g_kw, d_sd, d_kw = tf_legacy.tf_to_nvlabs(tf.Gs, tf.D)
    ck, cfg = fx["checkpoint"], fx["config"]
    for actual, expected in ((g_sd, ck["G_ema"]), (d_sd, ck["D"])):
        assert list(actual) == list(expected)
        for key, value in expected.items():
            assert actual[key].dtype == value.dtype and actual[key].shape == value.shape, key
            if key.endswith("affine.bias"):  # mod_bias + 1
                torch.testing.assert_close(actual[key], value, rtol=0, atol=1e-6)
            else:
                assert torch.equal(actual[key], value), key
    assert {k: v for k, v in g_kw.items() if k != "channels"} == cfg["G_init_kwargs"]
    assert g_kw["channels"] == cfg["G_channels"]
    for key, value in cfg["D_init_kwargs"].items():
        if key != "epilogue_kwargs":
            assert d_kw[key] == value, key
    assert d_kw["epilogue_kwargs"] == {"mbstd_group_size": 4, "mbstd_num_channels": 1}
    assert d_kw["architecture"] == "resnet" and d_kw["channels"] == cfg["G_channels"]
    assert not marker.exists()


def test_tf_conversion_without_hints_or_discriminator(written, marker):
    tf = pickles.read_tf_pickle(written("tf", d_static={"mbstd_group_size": None}))
    g_sd, g_kw, d_sd, d_kw = tf_legacy.tf_to_nvlabs(tf.Gs)
    assert d_sd is None and d_kw is None
    assert g_kw["synthesis_kwargs"]["channel_base"] == 1024 and g_kw["synthesis_kwargs"]["channel_max"] == 64
    assert tf_legacy.tf_to_nvlabs(tf.Gs, tf.D)[3]["epilogue_kwargs"]["mbstd_group_size"] is None


def test_tf_pickle_loads_through_load_generator_and_discriminator(fx, written, marker, tmp_path):
    path = tmp_path / "stylegan2-tiny-tf.pkl"
    path.write_bytes(written("tf"))
    case = fx["cases"]["plain_const"]
    G = load_generator(path)
    D = load_discriminator(path)
    with torch.no_grad():
        image = G.synthesis(G.mapping(case["inputs"]["z"]), noise_mode="const")
        logits = D(fx["cases"]["discriminator_b8"]["inputs"]["image"])
    torch.testing.assert_close(image, case["expected"]["image"], **IMAGE_TOL)
    torch.testing.assert_close(logits, fx["cases"]["discriminator_b8"]["expected"]["logits"], **IMAGE_TOL)
    assert not marker.exists()


def _records(fx, *, g_static=None, d_static=None, edit_synthesis=None, edit_mapping=None, edit_d=None):
    """TensorFlow records built directly (no pickle), with optional edits of the variable lists."""
    own, mapping, synthesis = writer.generator_tf_variables(fx["checkpoint"]["G_ema"])
    d_vars = writer.discriminator_tf_variables(fx["checkpoint"]["D"])
    mapping, synthesis, d_vars = dict(mapping), dict(synthesis), dict(d_vars)
    for vars_, edit in ((synthesis, edit_synthesis), (mapping, edit_mapping), (d_vars, edit_d)):
        if edit:
            edit(vars_)

    def net(name, variables, components=None, static=None):
        return TFNetwork(name=name, build_func_name=name, static_kwargs=dict(static or {}),
                         components=components or {}, variables=variables, version=4)

    gs = net("Gs", dict(own), {"mapping": net("G_mapping", mapping, static=g_static),
                               "synthesis": net("G_synthesis", synthesis, static=g_static)}, static=g_static)
    return gs, net("D", d_vars, static=d_static)


def _stylegan1(synthesis: dict):
    synthesis.clear()
    synthesis.update({
        "4x4/Const/const": np.zeros((1, 64, 4, 4), np.float32),
        "4x4/Const/Noise/weight": np.zeros((64,), np.float32),
        "4x4/Const/StyleMod/weight": np.zeros((64, 128), np.float32),
        "4x4/Conv/weight": np.zeros((3, 3, 64, 64), np.float32),
        "ToRGB_lod0/weight": np.zeros((1, 1, 64, 3), np.float32),
        "lod": np.float32(0),
    })


@pytest.mark.parametrize("edits,message", [
    (dict(edit_synthesis=_stylegan1), "StyleGAN1"),
    (dict(g_static={"label_size": 10}), r"label-conditioned model \(label_size=10"),
    (dict(edit_mapping=lambda m: m.update({"LabelConcat/weight": np.zeros((10, 64), np.float32)})),
     "label-conditioned model .*LabelConcat"),
    (dict(d_static={"label_size": 10}), "TensorFlow discriminator: a label-conditioned model"),
    (dict(edit_d=lambda v: v.update({"Output/weight": np.zeros((64, 10), np.float32)})),
     "projection.* discriminator"),
    (dict(g_static={"architecture": "resnet"}), "architecture='resnet'"),
    (dict(edit_synthesis=lambda s: s.update({"32x32/Skip/weight": np.zeros((1, 1, 64, 32), np.float32)})),
     "synthesis architecture 'resnet'"),
    (dict(d_static={"architecture": "skip"}), "discriminator: built with architecture='skip'"),
    (dict(edit_synthesis=lambda s: s.update({"32x32/Extra/weight": np.zeros((3,), np.float32)})),
     r"unknown variables 'synthesis/32x32/Extra/weight'"),
    (dict(edit_d=lambda v: v.update({"Extra": np.zeros((3,), np.float32)})), "discriminator: unknown variables"),
    (dict(edit_synthesis=lambda s: s.pop("noise3")), r"variable 'synthesis/noise3' is missing"),
    (dict(edit_synthesis=lambda s: s.update({"lod": np.float32(1.0)})), "level of detail"),
    (dict(edit_synthesis=lambda s: s.update({"8x8/Conv1/weight": np.zeros((3, 3, 64, 32), np.float32)})),
     "has shape"),
    (dict(d_static={"mbstd_num_features": 2}), "mbstd_num_features=2"),
])
def test_unsupported_tf_networks_are_refused(fx, edits, message):
    gs, d = _records(fx, **edits)
    with pytest.raises(ModelFormatError, match=message):
        tf_legacy.tf_to_nvlabs(gs, d)


def test_zero_lod_variable_is_accepted(fx):
    gs, d = _records(fx, edit_synthesis=lambda s: s.update({"lod": np.float32(0.0)}))
    assert list(tf_legacy.tf_to_nvlabs(gs, d)[0]) == list(fx["checkpoint"]["G_ema"])
