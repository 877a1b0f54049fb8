"""e4e checkpoints (encoder4editing's training coach) -> the encoder's architecture, its weights and the decoder's.

A checkpoint's ``state_dict`` holds ``encoder.*`` (an ``Encoder4Editing``, whose keys are ours once the prefix is
stripped) and ``decoder.*`` (a rosinality StyleGAN2 generator, converted by ``engine.convert.rosinality``). The
architecture is inferred from the weights alone, every number from a shape: the stem and block widths, the units per
block (runs of equal width), IR or IR-SE (the SE keys) and the SE width, the number of W+ rows (style blocks) and
their width, which feature map each row reads and the input size (the style blocks' conv counts: a block reading
``c3`` at input/16 has log2(input/16) convs, one reading ``p2`` one more, ``p1`` two more). The training options
(``opts``) are read leniently: only what they say about the architecture is checked against the weights.
"""
from __future__ import annotations

import argparse
import math
import re

import torch

from engine.convert.common import require, short_list
from engine.errors import ModelFormatError, describe
from engine.models.e4e import E4EConfig, Encoder4Editing

ENCODER_TYPE = "Encoder4Editing"
PREFIXES = ("encoder.", "decoder.")


def is_e4e_checkpoint(obj) -> bool:
    """A dict that looks like an e4e (pSp-family) checkpoint: a ``state_dict`` (or the dict itself) with
    ``encoder.*`` keys."""
    if not isinstance(obj, dict):
        return False
    sd = obj.get("state_dict", obj)
    return isinstance(sd, dict) and any(isinstance(k, str) and k.startswith("encoder.") for k in sd)


def split_state_dict(sd: dict, *, what: str) -> tuple[dict, dict]:
    """(encoder weights, decoder weights) of a checkpoint's state dict, prefixes stripped; other keys are refused."""
    parts: dict[str, dict] = {p: {} for p in PREFIXES}
    unknown = []
    for key, value in sd.items():
        prefix = next((p for p in PREFIXES if isinstance(key, str) and key.startswith(p)), None)
        if prefix is None:
            unknown.append(str(key))
            continue
        if not isinstance(value, torch.Tensor):
            raise ModelFormatError(f"{what}: entry {key!r} is {describe(value)}, not a tensor")
        parts[prefix][key[len(prefix):]] = value
    if unknown:
        raise ModelFormatError(f"{what}: the state dict has keys outside encoder.* and decoder.* "
                               f"({short_list(unknown)}); this is not an e4e checkpoint the editor knows")
    require(bool(parts["encoder."]), f"{what}: the state dict holds no e4e encoder (no encoder.* keys)")
    return parts["encoder."], parts["decoder."]


def read_opts(opts, *, what: str) -> dict:
    """The training options as a plain dict (``vars`` of a Namespace; {} when absent)."""
    if opts is None:
        return {}
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    if not isinstance(opts, dict):
        raise ModelFormatError(f"{what}: the training options ('opts') are {describe(opts)}, not a dictionary")
    return dict(opts)


def _shape(sd: dict, key: str, ndim: int, what: str) -> tuple[int, ...]:
    require(key in sd, f"{what}: encoder.{key} is missing")
    shape = tuple(sd[key].shape)
    require(len(shape) == ndim, f"{what}: encoder.{key} has shape {shape}, expected {ndim} dimensions")
    return shape


def _indices(sd: dict, pattern: str, what: str, noun: str) -> list[int]:
    ids = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(pattern, k)))
    require(bool(ids), f"{what}: the encoder has no {noun}")
    require(ids == list(range(len(ids))), f"{what}: the encoder's {noun} are not numbered 0..{len(ids) - 1} "
                                          f"(found {short_list(str(i) for i in ids)})")
    return ids


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """(value, count) of consecutive equal values."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and runs[-1][0] == v:
            runs[-1] = (v, runs[-1][1] + 1)
        else:
            runs.append((v, 1))
    return runs


def _se_reduction(depths: list[int], hidden: list[int], what: str) -> int:
    """The largest r with ``depth // r == hidden`` for every unit (any r that fits builds the same network)."""
    require(min(hidden) >= 1, f"{what}: an SE module is 0 channels wide")
    r = min(d // h for d, h in zip(depths, hidden))
    require(r >= 1 and all(d // r == h for d, h in zip(depths, hidden)),
            f"{what}: the SE modules' widths {short_list(str(h) for h in hidden)} follow no common reduction of "
            f"the unit widths")
    return r


def encoder_config(sd: dict, opts: dict, *, what: str) -> tuple[E4EConfig, list[str]]:
    """The architecture of the encoder weights ``sd`` (``encoder.`` stripped), checked against ``opts``; and notes."""
    notes: list[str] = []
    stem = _shape(sd, "input_layer.0.weight", 4, what)  # [C, 3, 3, 3]
    require(stem[1] == 3, f"{what}: the encoder's first conv reads {stem[1]} channels, not RGB")
    units = _indices(sd, r"body\.(\d+)\.res_layer\.1\.weight", what, "body units")
    widths = [_shape(sd, f"body.{i}.res_layer.1.weight", 4, what)[0] for i in units]
    blocks = _runs(widths)
    require(len(blocks) == 4 and all(a[0] < b[0] for a, b in zip(blocks, blocks[1:])),
            f"{what}: the body's unit widths form {len(blocks)} blocks ({', '.join(f'{c} x {d}' for d, c in blocks)})"
            "; e4e's body has four blocks of growing width")
    has_se = [f"body.{i}.res_layer.5.fc1.weight" in sd for i in units]
    require(all(has_se) or not any(has_se), f"{what}: only some body units have squeeze-excitation modules")
    se = None
    if all(has_se):
        se = _se_reduction(widths, [_shape(sd, f"body.{i}.res_layer.5.fc1.weight", 4, what)[0] for i in units], what)
    styles = _indices(sd, r"styles\.(\d+)\.linear\.weight", what, "style blocks")
    w_dim = _shape(sd, "styles.0.linear.weight", 2, what)[0]
    convs = [sum(1 for k in sd if re.fullmatch(rf"styles\.{i}\.convs\.\d+\.weight", k)) for i in styles]
    k = convs[0]
    require(k >= 1, f"{what}: style block 0 has no convolutions")
    require(all(c in (k, k + 1, k + 2) for c in convs) and convs == sorted(convs),
            f"{what}: the style blocks' conv counts {convs} do not step from c3 ({k}) to p2 ({k + 1}) and p1 "
            f"({k + 2})")
    try:
        cfg = E4EConfig(mode="ir_se" if se is not None else "ir", stem_channels=stem[0],
                        depths=tuple(d for d, _ in blocks), units=tuple(c for _, c in blocks), se_reduction=se,
                        n_styles=len(styles), w_dim=w_dim, coarse_ind=convs.count(k),
                        middle_ind=convs.count(k) + convs.count(k + 1), input_size=2 ** (k + 4))
    except ValueError as e:
        raise ModelFormatError(f"{what}: the encoder's weights give no valid architecture: {e}") from None
    _check_opts(cfg, opts, what=what, notes=notes)
    return cfg, notes


def _check_opts(cfg: E4EConfig, opts: dict, *, what: str, notes: list[str]) -> None:
    kind = opts.get("encoder_type")
    if kind is None:
        notes.append("the file does not say which encoder it holds: read as e4e")
    elif kind != ENCODER_TYPE:
        raise ModelFormatError(f"{what}: the training options say encoder_type {kind!r}; only e4e "
                               f"({ENCODER_TYPE!r}) encoders are supported (pSp's work differently)")
    size = opts.get("stylegan_size")
    if size is None:
        notes.append(f"the file does not say its generator's size: {cfg.n_styles} style blocks")
        return
    if isinstance(size, bool) or not isinstance(size, int) or size < 4 or size & (size - 1):
        raise ModelFormatError(f"{what}: the training options' stylegan_size {size!r} is not a power of two")
    n = 2 * int(math.log2(size)) - 2
    require(n == cfg.n_styles, f"{what}: the training options say stylegan_size {size} ({n} W+ rows), but the "
                               f"encoder has {cfg.n_styles} style blocks")


def build_encoder(cfg: E4EConfig, sd: dict, *, what: str) -> Encoder4Editing:
    """An eval-mode encoder holding the weights ``sd`` (float32, CPU), built without initialising them first; refuses
    missing, unexpected, misshapen or non-finite entries naming them."""
    with torch.device("meta"):
        encoder = Encoder4Editing(cfg)
    check_weights(encoder, sd, what=what)
    sd = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype) for k, v in sd.items()}
    broken = [f"encoder.{k}" for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    require(not broken, f"{what}: the encoder's weights hold NaN or infinite values ({short_list(broken)})")
    encoder.load_state_dict(sd, strict=True, assign=True)
    return encoder.eval().requires_grad_(False)


def check_weights(module: torch.nn.Module, sd: dict, *, what: str) -> None:
    """``sd`` has exactly ``module``'s keys, with its shapes (``module`` may live on the meta device)."""
    own = module.state_dict()
    missing = [f"encoder.{k}" for k in own if k not in sd]
    unexpected = [f"encoder.{k}" for k in sd if k not in own]
    if missing or unexpected:
        parts = ([f"missing {short_list(missing)}"] if missing else []) + (
            [f"unexpected {short_list(unexpected)}"] if unexpected else [])
        raise ModelFormatError(f"{what}: the encoder's weights do not fit the architecture they imply "
                               f"({'; '.join(parts)})")
    for k, v in sd.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise ModelFormatError(f"{what}: encoder.{k} has shape {tuple(v.shape)}, the architecture needs "
                                   f"{tuple(own[k].shape)}")
