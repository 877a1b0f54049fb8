"""StyleFlow flow files: the released state-dict layout (``flow_weight/modellarge10k.pt``) and the project's format.

StyleFlow saves ``prior.state_dict()`` as it is: keys ``chain.<i>.…`` with moving batch norm at even indices
(``weight, bias, step, running_mean, running_var``) and CNF blocks at odd ones (``sqrt_end_time``,
``odefunc._num_evals``, ``odefunc.diffeq.layers.<j>.{_layer, _hyper_bias, _hyper_gate}.…``). The architecture
(input size, hidden widths, condition size, number of blocks, batch norm or not) is read off the shapes; the
solver settings are the builder's fixed ones (``FlowConfig`` defaults).

The condition layout (``flow_layout``): a project-format file states it in ``extras["condition_layout"]``. A file
that does not is read as StyleFlow's layout only where nothing else is possible: StyleFlow's state dict with a
condition of 17 (the released ``modellarge10k.pt`` and its retrainings), and the project's own files written before
layouts were stored, which were all trained on StyleFlow's 17-value condition (``train flow``; when such a file
records its condition names, they must be StyleFlow's). Any other size has no layout until the user gives one.
"""
from __future__ import annotations

import re
from collections import defaultdict

import torch

from engine.algorithms.flow_layout import STYLEFLOW, ConditionLayout, LayoutError, missing_layout_message
from engine.convert.common import require, short_list
from engine.errors import ModelFormatError, describe
from engine.files.checkpoints import arch_config
from engine.models.flow import FORMAT, FORMAT_VERSION, ConditionalCNF, FlowConfig

_CHAIN_KEY = re.compile(r"chain\.(\d+)\.(.+)")
_LAYER_KEY = re.compile(r"odefunc\.diffeq\.layers\.(\d+)\.(_layer\.weight|_layer\.bias|_hyper_bias\.weight|"
                        r"_hyper_gate\.weight|_hyper_gate\.bias)")
_BN_KEYS = {"weight", "bias", "step", "running_mean", "running_var"}
_COUNTERS = ("step", "odefunc._num_evals")  # bookkeeping buffers; absent ones start at zero
STATED = "stated in the file"


def _shape(sd: dict, key: str, label: str) -> tuple[int, ...]:
    v = sd.get(key)
    require(isinstance(v, torch.Tensor), f"{label}: {key} is missing or not a tensor")
    return tuple(v.shape)


def _cnf_dims(sd: dict, prefix: str, label: str) -> tuple[int, tuple[int, ...], int, bool]:
    """(input_dim, hidden_dims, cond_dim, train_end_time) of the CNF block stored under ``prefix``."""
    layers = sorted({int(m.group(1)) for k in sd if k.startswith(prefix)
                     for m in [_LAYER_KEY.fullmatch(k[len(prefix):])] if m})
    require(layers == list(range(len(layers))) and layers, f"{label}: {prefix}… has no ODE net layers 0..n")
    widths, cond_dim = [], None
    for j in layers:
        p = f"{prefix}odefunc.diffeq.layers.{j}."
        w = _shape(sd, p + "_layer.weight", label)
        require(len(w) == 2, f"{label}: {p}_layer.weight must be 2-D, has shape {w}")
        out, inp = w
        require(not widths or inp == widths[-1], f"{label}: {p}_layer.weight takes {inp} inputs, the layer before "
                f"gives {widths[-1] if widths else None}")
        widths += [out] if widths else [inp, out]
        for name, want_out in (("_layer.bias", (out,)), ("_hyper_gate.bias", (out,))):
            require(_shape(sd, p + name, label) == want_out, f"{label}: {p}{name} must have shape {want_out}")
        for name in ("_hyper_bias.weight", "_hyper_gate.weight"):
            s = _shape(sd, p + name, label)
            require(len(s) == 2 and s[0] == out and s[1] >= 1, f"{label}: {p}{name} has shape {s}, expected "
                    f"({out}, 1 + condition size)")
            require(cond_dim in (None, s[1] - 1), f"{label}: {p}{name} implies a condition size of {s[1] - 1}, "
                    f"other layers {cond_dim}")
            cond_dim = s[1] - 1
    require(widths[-1] == widths[0], f"{label}: the ODE net of {prefix[:-1]} maps {widths[0]} to {widths[-1]} "
            "features; a flow must return its input size")
    end = sd.get(prefix + "sqrt_end_time")
    require(end is None or (isinstance(end, torch.Tensor) and end.numel() == 1),
            f"{label}: {prefix}sqrt_end_time must be a scalar")
    return widths[0], tuple(widths[1:-1]), cond_dim, end is not None


def styleflow_config(sd: dict, *, label: str = "flow") -> FlowConfig:
    """The architecture of a StyleFlow ``SequentialFlow`` state dict, from its keys and shapes."""
    groups: dict[int, set[str]] = defaultdict(set)
    strays = []
    for key in sd:
        m = _CHAIN_KEY.fullmatch(key) if isinstance(key, str) else None
        if m:
            groups[int(m.group(1))].add(m.group(2))
        else:
            strays.append(str(key))
    require(not strays, f"{label}: keys outside the flow's chain: {short_list(strays)}")
    require(sorted(groups) == list(range(len(groups))) and groups, f"{label}: chain indices are not 0..n")
    kinds = []
    for i in range(len(groups)):
        names = groups[i]
        if "running_mean" in names:
            unknown = names - _BN_KEYS
            require(not unknown, f"{label}: unexpected batch-norm keys "
                    f"{short_list(f'chain.{i}.' + n for n in unknown)}")
            kinds.append("bn")
        elif any(n.startswith("odefunc.diffeq.layers.") for n in names):
            unknown = {n for n in names if not _LAYER_KEY.fullmatch(n)} - {"sqrt_end_time", "odefunc._num_evals"}
            require(not unknown, f"{label}: unexpected CNF keys {short_list(f'chain.{i}.' + n for n in unknown)}")
            kinds.append("cnf")
        else:
            raise ModelFormatError(f"{label}: chain.{i} is neither a batch norm nor a CNF block "
                                   f"(keys {short_list(sorted(names))})")
    with_bn = kinds[0] == "bn"
    expected = (["bn"] + ["cnf", "bn"] * ((len(kinds) - 1) // 2)) if with_bn else ["cnf"] * len(kinds)
    require(kinds == expected and "cnf" in kinds, f"{label}: chain layout {kinds} is neither [BN, CNF, BN, ..., BN] "
            "nor CNF blocks alone")
    dims = {_cnf_dims(sd, f"chain.{i}.", label) for i, k in enumerate(kinds) if k == "cnf"}
    require(len(dims) == 1, f"{label}: the CNF blocks differ in architecture: {sorted(dims)}")
    input_dim, hidden, cond_dim, train_end_time = dims.pop()
    for i, k in enumerate(kinds):
        if k == "bn":
            for name in ("weight", "bias", "running_mean", "running_var"):
                s = _shape(sd, f"chain.{i}.{name}", label)
                require(s == (input_dim,), f"{label}: chain.{i}.{name} has shape {s}, the flow is {input_dim}-dim")
    require(train_end_time, f"{label}: the CNF blocks have no sqrt_end_time; StyleFlow's builder always learns T")
    return FlowConfig(input_dim=input_dim, hidden_dims=hidden, cond_dim=cond_dim, num_blocks=kinds.count("cnf"),
                      batch_norm=with_bn)


def _own_parts(obj: dict, label: str) -> tuple[FlowConfig, dict]:
    version = obj.get("format_version")
    require(version == FORMAT_VERSION, f"{label}: format version {version!r} is not supported (this editor reads "
            f"version {FORMAT_VERSION})")
    arch, state = obj.get("arch"), obj.get("state_dict")
    require(isinstance(state, dict), f"{label}: 'state_dict' must be a dictionary, got {describe(state)}")
    return arch_config(FlowConfig, arch, what=label), state


def is_flow_content(obj) -> bool:
    """Whether a loaded file's content is a flow: the project's flow format or StyleFlow's ``chain.…`` state dict."""
    if not isinstance(obj, dict) or not obj:
        return False
    return obj.get("format") == FORMAT or all(isinstance(k, str) and k.startswith("chain.") for k in obj)


def flow_parts(obj, *, label: str) -> tuple[FlowConfig, dict, list[str], str, str]:
    """(config, state dict, notes, format id, description) of a loaded flow file's content."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        cfg, state = _own_parts(obj, label)
        fmt, what = FORMAT, "face-editor flow"
    elif isinstance(obj, dict) and obj and all(isinstance(k, str) and k.startswith("chain.") for k in obj):
        cfg, state = styleflow_config(obj, label=label), obj
        fmt, what = "styleflow", "StyleFlow state dict"
    elif isinstance(obj, dict) and isinstance(obj.get("format"), str):
        raise ModelFormatError(f"{label} is a {obj['format']!r} file, not a StyleFlow flow")
    else:
        raise ModelFormatError(f"{label} is not a StyleFlow flow: expected StyleFlow's state dict (keys 'chain.0.…') "
                               f"or a face-editor flow file, found {describe(obj, keys=5)}")
    description = (f"{what}: {cfg.input_dim}-dim, hidden {'-'.join(map(str, cfg.hidden_dims))}, condition "
                   f"{cfg.cond_dim}, {cfg.num_blocks} block{'s' if cfg.num_blocks > 1 else ''}"
                   f"{'' if cfg.batch_norm else ', no batch norm'}")
    return cfg, state, [], fmt, description


def flow_layout(obj, cfg: FlowConfig, *, label: str) -> tuple[ConditionLayout | None, str]:
    """(layout, where it comes from in words) of a flow file's content; (None, what to pass) when it has none."""
    extras = obj.get("extras") if isinstance(obj, dict) and obj.get("format") == FORMAT else None
    if isinstance(extras, dict) and "condition_layout" in extras:
        try:
            layout = ConditionLayout.from_dict(extras["condition_layout"])
            layout.check_size(cfg.cond_dim)
        except LayoutError as e:
            raise ModelFormatError(f"{label}: the condition layout it states is unusable: {e}") from None
        return layout, STATED
    if cfg.cond_dim == STYLEFLOW.cond_dim:
        if extras is None:
            return STYLEFLOW, "StyleFlow's released layout (a StyleFlow state dict with a condition of 17)"
        names = extras.get("cond_names")
        if names is None or list(names) == list(STYLEFLOW.condition_names):
            return STYLEFLOW, ("StyleFlow's layout (a face-editor flow file from before layouts were stored, "
                               "trained on StyleFlow's condition)")
        return None, (missing_layout_message(label, cfg.cond_dim) + f" (The file names its condition values "
                      f"{', '.join(map(str, names))}: not StyleFlow's, and without their W+ rows.)")
    return None, missing_layout_message(label, cfg.cond_dim)


def load_strict(flow: ConditionalCNF, state: dict, *, label: str) -> list[str]:
    """Load ``state`` into ``flow`` as float32, every key and shape checked; absent counters start at zero.
    Returns notes on what was filled in."""
    own = flow.state_dict()
    sd, filled = {}, []
    for k, v in state.items():
        require(isinstance(v, torch.Tensor) and v.is_floating_point(), f"{label}: {k!r} is not a float tensor")
        sd[k] = v.detach().to("cpu", torch.float32)
    for k in own:
        if k not in sd and k.endswith(_COUNTERS):
            sd[k] = torch.zeros_like(own[k])
            filled.append(k)
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    require(not missing and not unexpected, f"{label}: weights do not fit the inferred architecture ("
            + "; ".join(p for p in (missing and f"missing {short_list(missing)}",
                                    unexpected and f"unexpected {short_list(unexpected)}") if p) + ")")
    for k, v in sd.items():
        require(v.shape == own[k].shape, f"{label}: {k} has shape {tuple(v.shape)}, the architecture needs "
                f"{tuple(own[k].shape)}")
    flow.load_state_dict(sd, strict=True)
    return [f"{len(filled)} counter buffers absent, started at zero"] if filled else []

