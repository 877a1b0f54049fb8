"""Test helper: write NVIDIA-style network pickles without NVIDIA's code.

``write_nvlabs_pickle`` produces what stylegan2-ada-pytorch / stylegan3 save (FACTS.md §16): a plain pickle of
``{'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}`` whose networks reduce to
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with the module's ``__dict__``-like state and an
embedded module source. ``write_tf_pickle`` produces a legacy TensorFlow pickle ``(G, D, Gs)`` of
``dnnlib.tflib.network.Network`` objects (FACTS.md §17), its variables derived from NVIDIA state dicts by
inverting the documented conversion. While pickling, stand-in modules ``torch_utils``, ``dnnlib`` and friends are
registered in ``sys.modules`` so that pickle records the same global names as NVIDIA's files; they are removed
again before anything is read back. The embedded sources create a marker file if they are ever executed.
"""
from __future__ import annotations

import contextlib
import pickle
import re
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

MODULE_DOC = "Network architectures (a test double of NVIDIA's training/networks.py)."


def module_source(marker: Path) -> str:
    """Python source that, if anyone ever executed it, would create ``marker`` and then fail."""
    return (f'"""{MODULE_DOC}\n\nNever executed by the editor."""\n'
            "import pathlib\n"
            f"pathlib.Path({str(marker)!r}).write_text('module_src was executed')\n"
            "raise RuntimeError('embedded module source must never be executed')\n")


def _reconstruct_persistent_obj(meta):
    raise RuntimeError("the stand-in reconstruct function is only a pickling target")


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (only its pickled name matters)."""


class Network:
    """Stand-in for ``dnnlib.tflib.network.Network``: pickles its state dict through ``__getstate__``."""

    def __init__(self, state: dict):
        self._state = state

    def __getstate__(self):
        return self._state


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
EasyDict.__module__ = "dnnlib.util"
Network.__module__ = "dnnlib.tflib.network"


class PersistentObject:
    """Pickles like an object of a ``@persistence.persistent_class`` class."""

    def __init__(self, meta: dict):
        self.meta = meta

    def __reduce__(self):
        return _reconstruct_persistent_obj, (self.meta,)


@contextlib.contextmanager
def nvidia_module_names():
    """Register the stand-in modules under NVIDIA's module names while pickling; restore ``sys.modules`` after."""
    names = {
        "torch_utils": {}, "torch_utils.persistence": {"_reconstruct_persistent_obj": _reconstruct_persistent_obj},
        "dnnlib": {"EasyDict": EasyDict}, "dnnlib.util": {"EasyDict": EasyDict},
        "dnnlib.tflib": {}, "dnnlib.tflib.network": {"Network": Network},
    }
    saved = {name: sys.modules.get(name) for name in names}
    try:
        for name, attrs in names.items():
            module = types.ModuleType(name)
            for key, value in attrs.items():
                setattr(module, key, value)
            sys.modules[name] = module
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _easy(value):
    if isinstance(value, dict):
        return EasyDict({k: _easy(v) for k, v in value.items()})
    return value


def _module_state(params: dict, buffers: dict, modules: dict, init_kwargs: dict, extra: dict) -> dict:
    return {
        "training": False,
        "_parameters": OrderedDict(params),
        "_buffers": OrderedDict(buffers),
        "_non_persistent_buffers_set": set(extra.pop("_non_persistent", ())),
        "_backward_hooks": OrderedDict(),
        "_forward_hooks": OrderedDict(),
        "_forward_pre_hooks": OrderedDict(),
        "_state_dict_hooks": OrderedDict(),
        "_load_state_dict_pre_hooks": OrderedDict(),
        "_modules": OrderedDict(modules),
        "_init_args": (),
        "_init_kwargs": _easy(init_kwargs),
        **extra,
    }


_G_CLASSES = [
    (r"", "Generator"), (r"mapping", "MappingNetwork"), (r"mapping\.fc\d+", "FullyConnectedLayer"),
    (r"synthesis", "SynthesisNetwork"), (r"synthesis\.b\d+", "SynthesisBlock"),
    (r"synthesis\.b\d+\.conv[01]", "SynthesisLayer"), (r"synthesis\.b\d+\.torgb", "ToRGBLayer"),
    (r".*\.affine", "FullyConnectedLayer"),
]
_D_CLASSES = [
    (r"", "Discriminator"), (r"b4", "DiscriminatorEpilogue"), (r"b\d+", "DiscriminatorBlock"),
    (r"b4\.(fc|out)", "FullyConnectedLayer"), (r"b4\.mbstd", "MinibatchStdLayer"), (r"b\d+\.\w+", "Conv2dLayer"),
]
_BUFFERS = {"resample_filter", "noise_const", "w_avg"}


def _class_name(path: str, table) -> str:
    for pattern, name in table:
        if re.fullmatch(pattern, path):
            return name
    raise KeyError(path)


def _tree(state_dict: dict) -> dict:
    root: dict = {}
    for key, value in state_dict.items():
        *path, leaf = key.split(".")
        node = root
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return root


def _persistent(node: dict, path: str, *, table, module_src: str, init_kwargs: dict) -> PersistentObject:
    params, buffers, modules = {}, {}, {}
    for name, value in node.items():
        sub_path = f"{path}.{name}" if path else name
        if isinstance(value, dict):
            modules[name] = _persistent(value, sub_path, table=table, module_src=module_src, init_kwargs={})
        elif name in _BUFFERS:
            buffers[name] = value.clone()
        else:
            params[name] = torch.nn.Parameter(value.clone(), requires_grad=False)
    extra: dict = {"weight_gain": np.float64(0.125), "activation": "lrelu"}
    class_name = _class_name(path, table)
    if class_name == "DiscriminatorEpilogue":
        modules["mbstd"] = PersistentObject(_meta("MinibatchStdLayer", module_src, _module_state(
            {}, {}, {}, {"group_size": 4, "num_channels": 1}, {"group_size": 4, "num_channels": 1})))
    if class_name == "SynthesisLayer":
        buffers["scratch"] = torch.zeros(2)
        extra["_non_persistent"] = ("scratch",)
    if class_name == "Conv2dLayer" and path.endswith(".skip"):
        params["bias"] = None
    return PersistentObject(_meta(class_name, module_src, _module_state(params, buffers, modules, init_kwargs,
                                                                        extra)))


def _meta(class_name: str, module_src: str, state: dict) -> dict:
    return {"type": "class", "version": 6, "module_src": module_src, "class_name": class_name, "state": state}


def network_object(state_dict: dict, init_kwargs: dict, *, discriminator: bool, module_src: str):
    """A persistent network object whose state flattens to ``state_dict``."""
    table = _D_CLASSES if discriminator else _G_CLASSES
    return _persistent(_tree(state_dict), "", table=table, module_src=module_src, init_kwargs=init_kwargs)


def augment_pipe_object(module_src: str) -> PersistentObject:
    state = _module_state({}, {"p": torch.tensor(0.25), "Hz_geom": torch.arange(12.0).reshape(2, 6)}, {},
                          {"xflip": 1, "rotate90": 1, "xint": 1, "scale": 1}, {"xflip": 1.0})
    return PersistentObject(_meta("AugmentPipe", module_src, state))


TRAINING_SET_KWARGS = {"class_name": "training.dataset.ImageFolderDataset", "path": "~/datasets/ffhq32.zip",
                       "use_labels": False, "max_size": 70000, "xflip": False, "resolution": 32}


def nvlabs_pickle_bytes(g_ema: dict, d: dict, g_kwargs: dict, d_kwargs: dict, *, protocol: int,
                        module_src: str) -> bytes:
    """An NVIDIA training snapshot pickle (``G`` is a separate copy of ``G_ema``)."""
    data = {
        "G": network_object(g_ema, g_kwargs, discriminator=False, module_src=module_src),
        "D": network_object(d, d_kwargs, discriminator=True, module_src=module_src),
        "G_ema": network_object(g_ema, g_kwargs, discriminator=False, module_src=module_src),
        "augment_pipe": augment_pipe_object(module_src),
        "training_set_kwargs": _easy(TRAINING_SET_KWARGS),
    }
    with nvidia_module_names():
        return pickle.dumps(data, protocol=protocol)


def _tf_conv(weight: torch.Tensor, *, flip: bool = False) -> np.ndarray:
    w = weight.flip([2, 3]) if flip else weight
    return w.permute(2, 3, 1, 0).contiguous().numpy()


def generator_tf_variables(g_ema: dict) -> tuple[list, list, list]:
    """(Gs own, mapping, synthesis) variable lists of the TensorFlow network that converts to ``g_ema``."""
    mapping, synthesis = [], []
    noise: dict[int, np.ndarray] = {}
    blocks = sorted({int(m.group(1)) for k in g_ema if (m := re.match(r"synthesis\.b(\d+)\.", k))})
    layer_index = {(4, "conv1"): 0}
    for k, r in enumerate(blocks[1:]):
        layer_index[(r, "conv0")] = 2 * k + 1
        layer_index[(r, "conv1")] = 2 * k + 2
    for r in blocks:
        p = f"synthesis.b{r}"
        if r == 4:
            synthesis.append(("4x4/Const/const", g_ema[f"{p}.const"][None].numpy()))
        layers = [("conv1", "4x4/Conv")] if r == 4 else [("conv0", f"{r}x{r}/Conv0_up"), ("conv1", f"{r}x{r}/Conv1")]
        for nv, tf in layers + [("torgb", f"{r}x{r}/ToRGB")]:
            q = f"{p}.{nv}"
            synthesis.append((f"{tf}/weight", _tf_conv(g_ema[f"{q}.weight"], flip=nv == "conv0")))
            synthesis.append((f"{tf}/mod_weight", g_ema[f"{q}.affine.weight"].t().contiguous().numpy()))
            synthesis.append((f"{tf}/mod_bias", (g_ema[f"{q}.affine.bias"] - 1).numpy()))
            if nv != "torgb":
                synthesis.append((f"{tf}/noise_strength", np.float32(g_ema[f"{q}.noise_strength"].item())))
                noise[layer_index[(r, nv)]] = g_ema[f"{q}.noise_const"][None, None].numpy()
            synthesis.append((f"{tf}/bias", g_ema[f"{q}.bias"].numpy()))
    synthesis += [(f"noise{i}", noise[i]) for i in sorted(noise)]
    n_fc = sum(1 for k in g_ema if re.fullmatch(r"mapping\.fc\d+\.weight", k))
    for i in range(n_fc):
        mapping.append((f"Dense{i}/weight", g_ema[f"mapping.fc{i}.weight"].t().contiguous().numpy()))
        mapping.append((f"Dense{i}/bias", g_ema[f"mapping.fc{i}.bias"].numpy()))
    return [("dlatent_avg", g_ema["mapping.w_avg"].numpy())], mapping, synthesis


def discriminator_tf_variables(d: dict) -> list:
    """Variables of the TensorFlow discriminator that converts to the NVIDIA state dict ``d``."""
    out = []
    blocks = sorted({int(m.group(1)) for k in d if (m := re.match(r"b(\d+)\.conv0\.", k))}, reverse=True)
    for r in blocks:
        if f"b{r}.fromrgb.weight" in d:
            out += [(f"{r}x{r}/FromRGB/weight", _tf_conv(d[f"b{r}.fromrgb.weight"])),
                    (f"{r}x{r}/FromRGB/bias", d[f"b{r}.fromrgb.bias"].numpy())]
        for nv, tf in (("conv0", "Conv0"), ("conv1", "Conv1_down")):
            out += [(f"{r}x{r}/{tf}/weight", _tf_conv(d[f"b{r}.{nv}.weight"])),
                    (f"{r}x{r}/{tf}/bias", d[f"b{r}.{nv}.bias"].numpy())]
        out.append((f"{r}x{r}/Skip/weight", _tf_conv(d[f"b{r}.skip.weight"])))
    out += [("4x4/Conv/weight", _tf_conv(d["b4.conv.weight"])), ("4x4/Conv/bias", d["b4.conv.bias"].numpy()),
            ("4x4/Dense0/weight", d["b4.fc.weight"].t().contiguous().numpy()),
            ("4x4/Dense0/bias", d["b4.fc.bias"].numpy()),
            ("Output/weight", d["b4.out.weight"].t().contiguous().numpy()), ("Output/bias", d["b4.out.bias"].numpy())]
    return out


def tf_network(name: str, func: str, variables: list, *, static_kwargs: dict, module_src: str,
               components: dict | None = None) -> Network:
    return Network({
        "version": 4, "name": name, "static_kwargs": _easy(static_kwargs),
        "components": EasyDict(components or {}), "build_module_src": module_src, "build_func_name": func,
        "variables": variables,
    })


def tf_pickle_bytes(g_ema: dict, d: dict, *, protocol: int, module_src: str, g_static: dict | None = None,
                    d_static: dict | None = None) -> bytes:
    """A legacy TensorFlow pickle ``(G, D, Gs)`` whose ``Gs``/``D`` convert to ``g_ema``/``d``."""
    own, mapping, synthesis = generator_tf_variables(g_ema)
    g_static = dict(g_static or {})
    d_static = dict(d_static or {})

    def generator(name: str) -> Network:
        comps = {
            "mapping": tf_network("G_mapping", "training.networks_stylegan2.G_mapping", mapping,
                                  static_kwargs=g_static, module_src=module_src),
            "synthesis": tf_network("G_synthesis", "training.networks_stylegan2.G_synthesis_stylegan2", synthesis,
                                    static_kwargs=g_static, module_src=module_src),
        }
        return tf_network(name, "training.networks_stylegan2.G_main", own, static_kwargs=g_static,
                          module_src=module_src, components=comps)

    D = tf_network("D", "training.networks_stylegan2.D_stylegan2", discriminator_tf_variables(d),
                   static_kwargs=d_static, module_src=module_src)
    with nvidia_module_names():
        return pickle.dumps((generator("G"), D, generator("Gs")), protocol=protocol)
