"""Opening an e4e model file (``e4e_ffhq_encode.pt`` and the other checkpoints e4e's training code writes).

``load_e4e(path_or_dict)`` returns an ``E4E`` (``engine.models.e4e``): the encoder, its average latent, the training
options, and the generator it was trained with when the file holds one (its ``decoder.*`` part, a rosinality
StyleGAN2, converted as ``load_generator`` converts rosinality files). The file is read with
``torch.load(weights_only=True)`` (``engine.files.storage``). Layout::

    {"state_dict": {"encoder.*": ..., "decoder.*": ...},   # a bare state dict is accepted too
     "opts": {...},                                        # the training options, read leniently
     "latent_avg": [n_styles, w_dim]}                      # when trained with start_from_latent_avg

How codes become W+ latents (``E4E.average``): plus the stored ``latent_avg``; when the options say
``start_from_latent_avg`` but the file stores none, plus the generator's ``w_avg`` (e4e computes its decoder's mean
latent then), so encoding needs the file's decoder or a paired generator; with ``start_from_latent_avg`` false, the
codes are the latents. Files whose options do not say are read as the published models are trained (with the
average).

``open_model(path)`` is what opening any model file in the editor calls: a generator file gives its ``Generator``,
an e4e checkpoint its ``E4E`` (encoder and generator together; the file is read a second time, after the
generator loader refused it).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from engine.convert import e4e as convert
from engine.convert import rosinality
from engine.convert.common import require
from engine.errors import ModelFormatError, describe
from engine.files.guard import refuse_broken_files
from engine.files.loading import ModelInfo, build_generator, load_generator
from engine.files.storage import file_sha256, read_model_file
from engine.models.e4e import E4E, E4EConfig, check_pairing
from engine.models.stylegan2 import Generator

CARS_INPUT = (192, 256)  # (H, W): e4e resizes car photos to 192 x 256 ("cars_" datasets)

EXPECTED = "an e4e checkpoint (a dictionary with 'state_dict', 'opts' and usually 'latent_avg')"


def _source(source) -> tuple[object, str, str | None, str | None]:
    """(content, label, sha256, path) of a path or an already loaded checkpoint dict."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        kind, content = read_model_file(path)
        if kind != "torch":
            raise ModelFormatError(f"{path.name}: not {EXPECTED} but a network pickle")
        return content, path.name, file_sha256(path), str(path)
    if isinstance(source, dict):
        return source, "e4e checkpoint", None, None
    raise ModelFormatError(f"cannot open an e4e model from {describe(source)}: pass a path or a checkpoint dict")


def _latent_avg(value, cfg: E4EConfig, what: str) -> torch.Tensor | None:
    """The stored average latent as [n_styles, w_dim] float32 (a single row [w_dim] / [1, w_dim] is repeated)."""
    if value is None:
        return None
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise ModelFormatError(f"{what}: latent_avg is {describe(value)}, not a tensor of numbers")
    n, d = cfg.n_styles, cfg.w_dim
    shape = tuple(value.shape)
    require(shape in ((n, d), (1, d), (d,)),
            f"{what}: latent_avg has shape {shape}; the encoder makes W+ latents [{n}, {d}]")
    require(bool(torch.isfinite(value).all()), f"{what}: latent_avg holds NaN or infinite values")
    return value.detach().to("cpu", torch.float32).reshape(-1, d).expand(n, d).clone()


def _average(opts: dict, latent_avg: torch.Tensor | None, notes: list[str]) -> str:
    flag = opts.get("start_from_latent_avg")
    if flag is None:
        flag = True
        notes.append("the file does not say whether its codes are relative to the average latent: they are read "
                     "so, as the published e4e models are trained")
    if not flag:
        if latent_avg is not None:
            notes.append("trained without start_from_latent_avg: the stored latent_avg is not added to the codes")
        return "none"
    if latent_avg is None:
        notes.append("the file stores no average latent: the codes are added to the generator's w_avg")
        return "generator"
    return "file"


def _decoder(sd: dict, latent_avg: torch.Tensor | None, *, label: str, sha: str | None,
             path: str | None) -> Generator:
    """The file's ``decoder.*`` generator (rosinality keys); its ``w_avg`` is the average latent when every row of it
    is the same (as training starts from the generator's average), else computed."""
    require(rosinality.is_generator_state_dict(sd),
            f"{label}: the decoder.* weights are not a rosinality StyleGAN2 generator")
    what = f"{label} (decoder)"
    same_rows = latent_avg is not None and bool((latent_avg == latent_avg[:1]).all())
    cfg, native, notes = rosinality.generator_from_rosinality(
        sd, latent_avg=latent_avg[0] if same_rows else None, what=what)
    if latent_avg is not None and not same_rows:
        notes = [n for n in notes if n != "the file has no latent_avg"]
        notes.append("the average latent's rows differ: the generator's w_avg is computed")
    G = build_generator(cfg, native, label=what, notes=notes)
    G.model_info = ModelInfo(format="e4e", description="StyleGAN2 generator of an e4e checkpoint (rosinality layout)",
                             notes=tuple(notes), sha256=sha, path=path)
    return G


@refuse_broken_files
def load_e4e(source) -> E4E:
    """Open an e4e checkpoint (a path or an already loaded dict) as an ``E4E``; see the module docstring.

    Anything that is not such a checkpoint, weights that do not form an e4e encoder, options that contradict the
    weights, and a decoder that does not match the encoder's W+ shape are refused with a ``ModelFormatError``.
    """
    obj, label, sha, path = _source(source)
    return _from_content(obj, label=label, sha=sha, path=path)


@refuse_broken_files
def open_model(path: str | os.PathLike) -> Generator | E4E:
    """What a model file holds: its generator (``load_generator``), or, for an e4e checkpoint, the ``E4E`` (its
    encoder with its generator, or without one). Generators are read once; a file that is no generator is read
    again to see whether it is an e4e checkpoint, and otherwise refused with the generator loader's message."""
    try:
        return load_generator(path)
    except ModelFormatError as refused:
        kind, content = read_model_file(path)
        if kind != "torch" or not convert.is_e4e_checkpoint(content):
            raise refused from None
    path = Path(path)
    return _from_content(content, label=path.name, sha=file_sha256(path), path=str(path))


def _from_content(obj, *, label: str, sha: str | None, path: str | None) -> E4E:
    """The ``E4E`` of a checkpoint's content (see ``load_e4e``)."""
    if not isinstance(obj, dict):
        raise ModelFormatError(f"{label}: expected {EXPECTED}, found {describe(obj)}")
    if "state_dict" in obj:
        sd = obj["state_dict"]
        if not isinstance(sd, dict):
            raise ModelFormatError(f"{label}: the checkpoint's 'state_dict' is {describe(sd)}, not a dictionary")
    elif convert.is_e4e_checkpoint(obj):
        sd, obj = obj, {}
    else:
        raise ModelFormatError(f"{label}: expected {EXPECTED}, found {describe(obj)}")
    opts = convert.read_opts(obj.get("opts"), what=label)
    enc_sd, dec_sd = convert.split_state_dict(sd, what=label)
    cfg, notes = convert.encoder_config(enc_sd, opts, what=label)
    if "opts" not in obj:
        notes.append("the file stores no training options")
    encoder = convert.build_encoder(cfg, enc_sd, what=label)
    latent_avg = _latent_avg(obj.get("latent_avg"), cfg, label)
    average = _average(opts, latent_avg, notes)
    generator = _decoder(dec_sd, latent_avg, label=label, sha=sha, path=path) if dec_sd else None
    if generator is not None:
        check_pairing(cfg, generator, name="its generator (decoder.*)",
                      encoder_name=f"{label}: the encoder")
    else:
        notes.append("the file holds no generator: pair it with the one it was trained for")
    dataset = opts.get("dataset_type")
    cars = isinstance(dataset, str) and "cars_" in dataset
    shape = CARS_INPUT if cars else (cfg.input_size, cfg.input_size)
    parts = f"{cfg.mode.upper().replace('_', '-')} body, {cfg.n_styles} x {cfg.w_dim} W+"
    desc = f"e4e encoder ({parts}){' with its StyleGAN2 generator' if generator is not None else ''}"
    info = ModelInfo(format="e4e", description=desc, notes=tuple(notes), sha256=sha, path=path)
    try:
        return E4E(encoder=encoder, latent_avg=latent_avg, average=average, opts=opts, generator=generator,
                   input_shape=shape, info=info)
    except ValueError as e:
        raise ModelFormatError(f"{label}: {e}") from None
