"""Loaders for BicycleGAN files: the released ``latest_net_G.pth`` / ``latest_net_E.pth`` (and trainers'
``latest_net_D.pth`` / ``latest_net_D2.pth``), plain state dicts, and the project's own ``face-editor/bicyclegan``
format (which stores every network's config).

A released file is a bare ``state_dict()``. What its keys and shapes show is inferred (BICYCLEGAN_FACTS §1, §3):
U-Net depth, widths, code size, where z is added, up-sampling kind; encoder kind, depth and widths; discriminator
scales, depth and widths; the norm where its parameters or its place in the module list show it. What they cannot
show changes the images all the same, so it is never guessed: G's non-linearity ``nl``, whether it used
``use_dropout`` (train mode only, but part of the config), its ``norm`` when it is ``instance`` or ``none`` in the
z-to-all-layers U-Net (neither leaves keys), the code size ``nz`` of the input-only U-Net (its first conv mixes image
and code channels). These come from, in order:

1. the options file the training wrote beside the weights (``opt.txt``, ``train_opt.txt``: see
   ``engine.convert.training_options``), found beside the file or in the folder, or given as ``options=`` (a
   mapping in the options file's names, a path to such a file, or ``TrainingOptions``; it replaces the look-up);
2. keyword arguments naming config fields (``nl='lrelu'``).

Each stated value is checked against the weights and against the other source: any contradiction refuses, naming
the option, and so does any choice left open, naming the options to pass. The options file's network choices map
to the configs as BicycleGAN's ``define_G`` / ``define_E`` / ``define_D`` read them (``netG unet_256`` = 8 U-Net
levels, ``nz 0`` = z to the input only, E reads ``output_nc`` channels, D ``output_nc`` (+ ``input_nc`` with
``conditional_D``)). DataParallel ``module.`` prefixes and the InstanceNorm running statistics of old PyTorch
versions are removed; every other mismatch raises ``ModelFormatError`` naming the keys. (BicycleGAN's ``test.py``
rewrites ``opt.txt`` with the test run's options, which its scripts give without ``--use_dropout``: a value that
acts in train mode only, so the networks, loaded in eval mode, compute the same.)
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from engine.convert.common import short_list
from engine.convert.i2i_common import (
    build_config,
    build_strict,
    is_state_dict,
    read_own_networks,
    read_source,
    strip_module_prefix,
    tensor_at,
)
from engine.convert.training_options import (
    TRAINING_FILES,
    TrainingOptions,
    find_training_options,
    read_training_options,
)
from engine.errors import ModelFormatError, describe
from engine.files.guard import refuse_broken_files
from engine.models.bicyclegan import (
    FORMAT,
    FORMAT_VERSION,
    KINDS,
    NONLINEARITIES,
    BicycleEncoderConfig,
    Encoder,
    MultiscaleDiscriminator,
    MultiscaleDiscriminatorConfig,
    UnetConfig,
    UnetGenerator,
    default_ndf,
)

RELEASED_FILES = {"G": "latest_net_G.pth", "E": "latest_net_E.pth", "D": "latest_net_D.pth",
                  "D2": "latest_net_D2.pth"}
# options of the training's options file that describe the networks (several options files must agree on them)
NETWORK_OPTIONS = ("input_nc", "output_nc", "nz", "ngf", "nef", "ndf", "netG", "netE", "netD", "netD2", "num_Ds",
                   "norm", "nl", "upsample", "where_add", "use_dropout", "conditional_D")
# what a choice the weights cannot show is, for the refusal that asks for it
_CHOICE_WORDS = {"nl": "its non-linearity", "norm": "its norm", "use_dropout": "whether it used dropout"}


def _has_params(sd: dict, prefix: str) -> bool:
    """Whether a norm at ``prefix`` holds affine parameters (batch norm)."""
    return f"{prefix}.weight" in sd and sd[f"{prefix}.weight"].ndim == 1


def _norm_at(sd: dict, prefixes: list[str], *, present: bool | None) -> str | None:
    """The norm kind from the keys at the positions a norm would take. ``present``: whether the layout shows a
    norm module there (True/False), or None when instance norm and no norm leave the same keys (-> None unless
    batch-norm parameters are there)."""
    if any(_has_params(sd, p) for p in prefixes):
        return "batch"
    if present is None:
        return None
    return "instance" if present else "none"


def _put_norm(fixed: dict, open_: dict, norm: str | None) -> None:
    if norm is None:
        open_["norm"] = ("instance", "none")
    else:
        fixed["norm"] = norm


# ---- what the options file and the arguments state ---------------------------------------------------------------
# ``Stated``: config field -> (value, who says it: "opt.txt line 23 says nl: lrelu", "the argument nl='lrelu'")

def _stated_arguments(cls, arch: dict, *, what: str) -> dict:
    if unknown := sorted(set(arch) - set(cls.__dataclass_fields__)):
        raise ModelFormatError(f"{what}: unknown architecture arguments {unknown} (known: "
                               f"{list(cls.__dataclass_fields__)})")
    return {k: (tuple(v) if isinstance(v, list) else v, f"the argument {k}={v!r}") for k, v in arch.items()}


def _read(opts: TrainingOptions | None, table: tuple) -> dict:
    """Stated fields of ``table`` rows ``(option, field, reader)``, for the options the file has."""
    if opts is None:
        return {}
    return {field: (read(opts, option), opts.says(option)) for option, field, read in table if option in opts}


def _network_size(opts: TrainingOptions, option: str, pattern: str, known: str) -> tuple[re.Match, int]:
    """A network name such as ``unet_256`` -> (its match, log2 of its size)."""
    m = re.fullmatch(pattern, opts.text(option))
    size = int(m.group("size")) if m else 0
    if m is None or size < 1 or size & (size - 1):
        raise ModelFormatError(f"{opts.says(option)}, which is not {known}")
    return m, int(math.log2(size))


_NUMBER, _TEXT, _FLAG = TrainingOptions.number, TrainingOptions.text, TrainingOptions.flag
_G_OPTIONS = (("input_nc", "input_nc", _NUMBER), ("output_nc", "output_nc", _NUMBER), ("nz", "nz", _NUMBER),
              ("ngf", "ngf", _NUMBER), ("norm", "norm", _TEXT), ("nl", "nl", _TEXT), ("upsample", "upsample", _TEXT),
              ("where_add", "where_add", _TEXT), ("use_dropout", "use_dropout", _FLAG))
_E_OPTIONS = (("output_nc", "input_nc", _NUMBER), ("nz", "nz", _NUMBER), ("nef", "nef", _NUMBER),
              ("norm", "norm", _TEXT))
_D_OPTIONS = (("norm", "norm", _TEXT),)


def _generator_options(opts: TrainingOptions | None) -> dict:
    stated = _read(opts, _G_OPTIONS)
    if opts is not None and "netG" in opts:
        _, levels = _network_size(opts, "netG", r"unet_(?P<size>\d+)", "a BicycleGAN U-Net (unet_128, unet_256)")
        stated["num_downs"] = (levels, opts.says("netG"))
    if stated.get("nz", (None,))[0] == 0:  # define_G: without a code, z goes to the input only
        stated["where_add"] = ("input", f"{opts.says('nz')} (so z is added to the input only)")
    return stated


def _encoder_options(opts: TrainingOptions | None) -> dict:
    stated = _read(opts, _E_OPTIONS)
    if opts is not None and "netE" in opts:
        m, log_size = _network_size(opts, "netE", r"(?P<kind>resnet|conv)_(?P<size>\d+)",
                                    "a BicycleGAN encoder (resnet_128, resnet_256, conv_128, conv_256)")
        stated["kind"] = (m.group("kind"), opts.says("netE"))
        stated["n_layers"] = (log_size - 3, opts.says("netE"))  # AvgPool(8) after n_layers halvings
    return stated


def _discriminator_options(opts: TrainingOptions | None, option: str) -> dict:
    stated = _read(opts, _D_OPTIONS)
    if opts is None:
        return stated
    if "output_nc" in opts:
        conditional = "conditional_D" in opts and opts.flag("conditional_D")
        if not conditional:
            stated["input_nc"] = (opts.number("output_nc"), opts.says("output_nc"))
        elif "input_nc" in opts:
            stated["input_nc"] = (opts.number("output_nc") + opts.number("input_nc"),
                                  f"{opts.says('conditional_D')} with input_nc + output_nc")
    if option in opts:
        m, log_size = _network_size(opts, option, r"basic_(?P<size>\d+)(?P<multi>_multi)?",
                                    "a BicycleGAN discriminator (basic_128, basic_256, basic_128_multi, "
                                    "basic_256_multi)")
        stated["n_layers"] = (log_size - 5, opts.says(option))
        if m.group("multi") is None:
            num_D = 1
        else:
            num_D = opts.number("num_Ds") if "num_Ds" in opts else None
        if num_D is not None and "ndf" in opts:
            said = " and ".join(opts.says(o) for o in ("ndf", option, "num_Ds") if o in opts)
            stated["ndf"] = (default_ndf(opts.number("ndf"), num_D), said)
    return stated


def _listed(items: list[str], last: str = "or") -> str:
    """'a', 'a or b', 'a, b or c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {last} " + items[-1]


def _choices(values: tuple) -> str:
    return _listed([repr(v) for v in values])


def _settle(fixed: dict, open_: dict, sources: list[dict], *, what: str) -> dict:
    """Config fields: the weights' ``fixed`` ones, then each source's (the options file, the arguments), each
    checked against the weights (``open_``: the values the weights leave possible) and the sources before it."""
    values, said = dict(fixed), {}
    for stated in sources:
        for field, (value, who) in stated.items():
            if field in fixed and fixed[field] != value:
                raise ModelFormatError(f"{what}: {who}, but the weights were made with {field} = {fixed[field]!r}")
            if field in open_ and value not in open_[field]:
                raise ModelFormatError(f"{what}: {who}, but with these weights {field} can only be "
                                       f"{_choices(open_[field])}")
            if field in said and values[field] != value:
                raise ModelFormatError(f"{what}: {who}, but {said[field]}")
            values[field], said[field] = value, who
    return values


def _ask_for(what: str, missing: list[str], open_: dict, *, code_channels: int | None = None) -> ModelFormatError:
    """The refusal for choices nothing said: which, and how to say them."""
    says = [f"{_CHOICE_WORDS[f]} ({f})" for f in missing]
    passes = [f"{f}= ({_choices(open_[f])})" for f in missing]
    if code_channels is not None:
        says.append(f"its code size (its first convolution reads input_nc + nz = {code_channels} channels)")
        passes.append("nz= (the encoder's code size) or input_nc=")
    hint = " (BicycleGAN's training scripts use nl: relu, norm: instance and use_dropout: True)" if missing else ""
    return ModelFormatError(f"{what} does not say {_listed(says)}, which its weights cannot show: put the "
                            f"{_listed(list(TRAINING_FILES[::-1]))} that its training wrote beside it, or pass "
                            f"{_listed(passes, 'and')}{hint}")


# ---- configs from the weights ------------------------------------------------------------------------------------

def generator_config(sd: dict, *, what: str = "BicycleGAN generator", options: TrainingOptions | None = None,
                     **arch) -> UnetConfig:
    """A ``UnetConfig`` from a G state dict (``module.`` already removed), the training's ``options`` and
    ``arch`` (config fields); refuses contradictions and choices nothing says."""
    stated = _stated_arguments(UnetConfig, arch, what=what)
    if "model.down.0.weight" in sd:
        fixed, open_ = _infer_unet_all(sd, what=what)
    elif "model.model.0.weight" in sd:
        fixed, open_ = _infer_unet_input(sd, what=what)
    else:
        raise ModelFormatError(f"{what}: not a BicycleGAN U-Net generator (no 'model.down.0.weight' or "
                               f"'model.model.0.weight'; keys start {short_list(sd, 4)})")
    open_.update(nl=NONLINEARITIES, use_dropout=(True, False))
    values = _settle(fixed, open_, [_generator_options(options), stated], what=what)
    code_channels = None
    if "in_channels" in fixed:  # the input-only U-Net: input_nc + nz channels into its first conv
        total = values.pop("in_channels")
        if "nz" in values and "input_nc" in values and values["nz"] + values["input_nc"] != total:
            raise ModelFormatError(f"{what}: input_nc {values['input_nc']} and nz {values['nz']} do not add up to "
                                   f"the {total} channels its first convolution reads (input_nc + nz)")
        if "nz" in values:
            values["input_nc"] = total - values["nz"]
        elif "input_nc" in values:
            values["nz"] = total - values["input_nc"]
        else:
            code_channels = total
    if (missing := [f for f in _CHOICE_WORDS if f in open_ and f not in values]) or code_channels is not None:
        raise _ask_for(what, missing, open_, code_channels=code_channels)
    return build_config(UnetConfig, values, {}, what=what)


def _infer_unet_all(sd: dict, *, what: str) -> tuple[dict, dict]:
    levels = 0
    while f"model.{'submodule.' * levels}down.{0 if levels == 0 else 1}.weight" in sd:
        levels += 1
    first = tensor_at(sd, "model.down.0.weight", 4, what=what)
    ngf = first.shape[0]
    if levels < 2:
        raise ModelFormatError(f"{what}: only {levels} U-Net level(s) found")
    nz = tensor_at(sd, "model.submodule.down.1.weight", 4, what=what).shape[1] - ngf
    if "model.up.1.weight" in sd:
        upsample, output_nc = "basic", tensor_at(sd, "model.up.1.weight", 4, what=what).shape[1]
    elif "model.up.3.weight" in sd:
        upsample, output_nc = "bilinear", tensor_at(sd, "model.up.3.weight", 4, what=what).shape[0]
    else:
        raise ModelFormatError(f"{what}: no outermost up-convolution ('model.up.1.weight' or 'model.up.3.weight')")
    norm_pos = 2 if upsample == "basic" else 4
    prefixes = []
    for k in range(1, levels):
        p = f"model.{'submodule.' * k}"
        prefixes += [f"{p}down.2", f"{p}up.{norm_pos}"]
    fixed = dict(input_nc=first.shape[1] - nz, output_nc=output_nc, nz=nz, ngf=ngf, num_downs=levels,
                 upsample=upsample, where_add="all")
    open_ = {}
    _put_norm(fixed, open_, _norm_at(sd, prefixes, present=None))
    return fixed, open_


def _infer_unet_input(sd: dict, *, what: str) -> tuple[dict, dict]:
    """The input-only U-Net: its first conv reads input_nc + nz channels (``in_channels``), which only a stated
    nz or input_nc splits."""
    first = tensor_at(sd, "model.model.0.weight", 4, what=what)
    ngf, in_ch = first.shape[0], first.shape[1]
    # level prefixes: outermost "model.model.", its submodule at index 1; deeper blocks hold it at 3 (with a
    # norm module after the down-conv) or 2 (without)
    prefix, levels, sub_index, norm_prefixes, present = "model.model.", 1, 1, [], None
    while any(k.startswith(f"{prefix}{sub_index}.model.") for k in sd):
        prefix = f"{prefix}{sub_index}.model."
        levels += 1
        if any(k.startswith(f"{prefix}3.model.") for k in sd):
            sub_index, present = 3, True
            norm_prefixes.append(f"{prefix}2")
        elif any(k.startswith(f"{prefix}2.model.") for k in sd):
            sub_index, present = 2, False
        else:
            break  # innermost: [lrelu, conv, nl, up..., norm]
    if "model.model.3.weight" in sd:
        upsample, output_nc = "basic", tensor_at(sd, "model.model.3.weight", 4, what=what).shape[1]
    elif "model.model.5.weight" in sd:
        upsample, output_nc = "bilinear", tensor_at(sd, "model.model.5.weight", 4, what=what).shape[0]
    else:
        raise ModelFormatError(f"{what}: no outermost up-convolution ('model.model.3.weight' or "
                               "'model.model.5.weight')")
    fixed = dict(in_channels=in_ch, output_nc=output_nc, ngf=ngf, num_downs=levels, upsample=upsample,
                 where_add="input")
    open_ = {"nz": tuple(range(in_ch)), "input_nc": tuple(range(1, in_ch + 1))}
    _put_norm(fixed, open_, _norm_at(sd, norm_prefixes, present=present))
    return fixed, open_


def encoder_config(sd: dict, *, what: str = "BicycleGAN encoder", options: TrainingOptions | None = None,
                   **arch) -> BicycleEncoderConfig:
    """A ``BicycleEncoderConfig`` from an E state dict, checked against the training's ``options`` and ``arch``."""
    stated = _stated_arguments(BicycleEncoderConfig, arch, what=what)
    fc = tensor_at(sd, "fc.0.weight", 2, what=what)
    first = tensor_at(sd, "conv.0.weight", 4, what=what)
    fixed = dict(input_nc=first.shape[1], nz=fc.shape[0], nef=first.shape[0], vae_like="fcVar.0.weight" in sd)
    open_ = {}
    if any(k.startswith("conv.1.conv.") for k in sd):
        blocks = 0
        while f"conv.{blocks + 1}.shortcut.1.weight" in sd:
            blocks += 1
        if "conv.1.conv.1.weight" in sd:
            norm = "none"
        else:
            norm = _norm_at(sd, ["conv.1.conv.0", "conv.1.conv.3"], present=True)
        fixed.update(kind="resnet", n_layers=blocks + 1)
    else:
        convs = sorted(int(m.group(1)) for k, v in sd.items()
                       if (m := re.fullmatch(r"conv\.(\d+)\.weight", k)) and v.ndim == 4)
        present = None if len(convs) < 3 else convs[2] - convs[1] == 3
        norm = _norm_at(sd, [f"conv.{i + 1}" for i in convs[1:]], present=present)
        fixed.update(kind="conv", n_layers=len(convs))
    _put_norm(fixed, open_, norm)
    values = _settle(fixed, open_, [_encoder_options(options), stated], what=what)
    if "norm" not in values:
        raise ModelFormatError(f"{what}: its weights do not show whether it uses instance norm or none: put the "
                               "opt.txt its training wrote beside it, or pass norm= ('instance' or 'none')")
    return build_config(BicycleEncoderConfig, values, {}, what=what)


def discriminator_config(sd: dict, *, what: str = "BicycleGAN discriminator", options: TrainingOptions | None = None,
                         net_option: str = "netD", **arch) -> MultiscaleDiscriminatorConfig:
    """A ``MultiscaleDiscriminatorConfig`` from a D state dict, checked against the training's ``options``
    (``net_option``: ``netD`` or ``netD2``, the option naming this network) and ``arch``."""
    stated = _stated_arguments(MultiscaleDiscriminatorConfig, arch, what=what)
    scales = sorted({int(m.group(1)) for k in sd if (m := re.match(r"model_(\d+)\.", k))})
    if scales:
        if scales != list(range(len(scales))) or len(scales) < 2:
            raise ModelFormatError(f"{what}: discriminator scales {scales} are not model_0 ... model_N (N >= 1)")
        prefixes = [f"model_{i}." for i in scales]
    elif any(re.match(r"model\.\d+\.", k) for k in sd):
        prefixes = ["model."]
    else:
        raise ModelFormatError(f"{what}: not a BicycleGAN discriminator (no 'model_0.*' or 'model.*' keys)")
    ndf, layers, norms = [], set(), set()
    for p in prefixes:
        convs = sorted(int(m.group(1)) for k, v in sd.items()
                       if (m := re.fullmatch(re.escape(p) + r"(\d+)\.weight", k)) and v.ndim == 4)
        if len(convs) < 3:
            raise ModelFormatError(f"{what}: scale {p[:-1]!r} has {len(convs)} convolutions (at least 3 expected)")
        ndf.append(sd[f"{p}{convs[0]}.weight"].shape[0])
        layers.add(len(convs) - 2)
        norms.add(_norm_at(sd, [f"{p}{i + 1}" for i in convs[1:-1]], present=convs[2] - convs[1] == 3))
    if len(layers) != 1 or len(norms) != 1:
        raise ModelFormatError(f"{what}: the scales differ in depth {sorted(layers)} or norm {sorted(norms)}")
    first = tensor_at(sd, f"{prefixes[0]}0.weight", 4, what=what)
    fixed = dict(input_nc=first.shape[1], ndf=tuple(ndf), n_layers=layers.pop(), norm=norms.pop())
    values = _settle(fixed, {}, [_discriminator_options(options, net_option), stated], what=what)
    return build_config(MultiscaleDiscriminatorConfig, values, {}, what=what)


# ---- loaders -----------------------------------------------------------------------------------------------------

def options_beside(where: str | os.PathLike) -> TrainingOptions | None:
    """The training's options file(s) in the folder ``where`` or beside the file ``where`` (None: none there)."""
    return find_training_options(where, compared=NETWORK_OPTIONS)


def _training_options(options, source) -> TrainingOptions | None:
    """``options`` as given (a mapping, a file or folder path, ``TrainingOptions``), else those beside a path
    ``source``."""
    if options is None:
        return options_beside(source) if isinstance(source, (str, os.PathLike)) else None
    if isinstance(options, TrainingOptions):
        return options
    if isinstance(options, Mapping):
        return TrainingOptions.from_mapping(options)
    if isinstance(options, (str, os.PathLike)):
        return options_beside(options) if Path(options).is_dir() else read_training_options(options)
    raise TypeError(f"options must be a mapping, the path of an options file or None, got {describe(options)}")


def _state_dict(obj, *, what: str) -> dict:
    if not is_state_dict(obj) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = describe(obj, keys=4)
        raise ModelFormatError(f"{what}: expected a state dict of tensors (a latest_net_*.pth file), found {found}")
    return strip_module_prefix(obj, what=what)


def _own(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def _network(obj, what: str, name: str, arch: dict, opts: TrainingOptions | None):
    """Network ``name`` of a read file: a project-format file's own, or built from a state dict."""
    if _own(obj):
        nets = read_own_networks(obj, fmt=FORMAT, version=FORMAT_VERSION, kinds=KINDS, what=what)
        if name not in nets:
            raise ModelFormatError(f"{what}: the file holds no {name} (it has {sorted(nets)})")
        return nets[name]
    sd = _state_dict(obj, what=what)
    if name == "G":
        cfg = generator_config(sd, what=what, options=opts, **arch)
    elif name == "E":
        cfg = encoder_config(sd, what=what, options=opts, **arch)
    else:
        cfg = discriminator_config(sd, what=what, options=opts, net_option="netD" if name == "D" else "netD2", **arch)
    return build_strict(KINDS[name][0], cfg, sd, what=what)


def _load_one(source, name: str, arch: dict, options, what: str | None):
    obj, label = read_source(source, what=what or f"BicycleGAN {name}")
    opts = None if _own(obj) else _training_options(options, source)
    return _network(obj, label, name, arch, opts)


@refuse_broken_files
def load_bicyclegan_generator(source, *, options=None, what: str | None = None, **arch) -> UnetGenerator:
    """G (eval mode) from ``latest_net_G.pth``, a G state dict, or a project-format file/dict. ``options``: the
    training's options (a mapping in the options file's names, or an options file's path); by default the
    ``opt.txt`` / ``train_opt.txt`` beside a file. ``arch``: config fields (``nl``, ``norm``, ``use_dropout``;
    ``nz`` or ``input_nc`` for an input-only U-Net). ``what`` names an already-read ``source`` in messages."""
    return _load_one(source, "G", arch, options, what)


@refuse_broken_files
def load_bicyclegan_encoder(source, *, options=None, what: str | None = None, **arch) -> Encoder:
    """E (eval mode) from ``latest_net_E.pth``, an E state dict, or a project-format file/dict (``options`` as for
    ``load_bicyclegan_generator``: checked against the weights)."""
    return _load_one(source, "E", arch, options, what)


@refuse_broken_files
def load_bicyclegan_discriminator(source, *, name: str = "D", options=None, what: str | None = None,
                                  **arch) -> MultiscaleDiscriminator:
    """D or D2 (eval mode) from ``latest_net_D.pth`` / ``latest_net_D2.pth``, a state dict, or a project file."""
    if name not in ("D", "D2"):
        raise ValueError(f"name must be 'D' or 'D2', got {name!r}")
    return _load_one(source, name, arch, options, what)


@refuse_broken_files
def load_bicyclegan(source, *, options=None, **g_arch) -> dict[str, nn.Module]:
    """Every network of a BicycleGAN model: a folder with the released ``latest_net_G.pth`` / ``latest_net_E.pth``
    (and ``latest_net_D.pth`` / ``latest_net_D2.pth`` when present) and the training's ``opt.txt``, a project-format
    file, or a dict of state dicts ``{"G": ..., "E": ...}``. Returns ``{"G", "E", ...}`` in eval mode; G and E must
    agree on the code size and E must read G's output channels. ``options`` and ``g_arch``: as for
    ``load_bicyclegan_generator`` (``g_arch`` is G's)."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        folder = Path(source)
        files = {n: folder / f for n, f in RELEASED_FILES.items() if (folder / f).is_file()}
        if "G" not in files:
            raise ModelFormatError(f"{folder}: no {RELEASED_FILES['G']} in this folder")
        parts = {n: read_source(p, what=f"BicycleGAN {n}") for n, p in files.items()}
    else:
        obj, what = read_source(source, what="BicycleGAN model")
        if _own(obj):
            nets = read_own_networks(obj, fmt=FORMAT, version=FORMAT_VERSION, kinds=KINDS, what=what)
            _check_pair(nets, what=what)
            return nets
        if not isinstance(obj, dict) or "G" not in obj or not set(obj) <= set(KINDS):
            raise ModelFormatError(f"{what}: expected a folder, a project file or a dict of state dicts with keys "
                                   f"among {list(KINDS)} including 'G'")
        parts = {n: (part, f"BicycleGAN {n}") for n, part in obj.items()}
    opts = _training_options(options, source)
    nets = {}
    if "E" in parts:
        nets["E"] = _network(*parts["E"], "E", {}, opts)
        stated_code = {"nz", "input_nc"} & (set(g_arch) | set(opts.values if opts is not None else ()))
        if not stated_code and not _own(parts["G"][0]) and \
                "model.model.0.weight" in _state_dict(parts["G"][0], what=parts["G"][1]):
            g_arch = {"nz": nets["E"].cfg.nz, **g_arch}  # the input-only U-Net takes E's codes
    nets["G"] = _network(*parts["G"], "G", g_arch, opts)
    for name in ("D", "D2"):
        if name in parts:
            nets[name] = _network(*parts[name], name, {}, opts)
    _check_pair(nets, what=str(source) if isinstance(source, (str, os.PathLike)) else "BicycleGAN model")
    return nets


def _check_pair(nets: dict, *, what: str) -> None:
    G, E = nets.get("G"), nets.get("E")
    if G is not None and E is not None:
        if G.cfg.nz != E.cfg.nz:
            raise ModelFormatError(f"{what}: G takes codes of size {G.cfg.nz} but E produces {E.cfg.nz}: the files "
                                   "belong to different models")
        if G.cfg.output_nc != E.cfg.input_nc:
            raise ModelFormatError(f"{what}: G makes {G.cfg.output_nc}-channel images but E reads "
                                   f"{E.cfg.input_nc} channels: the files belong to different models")


__all__ = ["load_bicyclegan_generator", "load_bicyclegan_encoder", "load_bicyclegan_discriminator",
           "load_bicyclegan", "generator_config", "encoder_config", "discriminator_config", "options_beside",
           "RELEASED_FILES", "NETWORK_OPTIONS"]
