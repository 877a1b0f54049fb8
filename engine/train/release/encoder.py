"""The release of a trained inversion encoder as the embedded default's encoder (``assets/encoder.pt``) beside the
generator it was trained for, with its manifest ``assets/encoder.json`` (sha256, the training and release commands,
hardware, fresh held-out figures against the ``w_avg`` baseline, the run's held-out curve, the latency)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from engine.assets import DEFAULT_ENCODER
from engine.files.loading import load_generator
from engine.files.paths import write_json
from engine.files.storage import read_model_file
from engine.models.encoder import FORMAT, Encoder, EncoderConfig, check_compatible, load_encoder, save_encoder
from engine.train.encoder import (
    EVAL_RECIPE,
    EVAL_SEED,
    EncoderTrainConfig,
    EncoderTrainer,
    evaluate_encoder,
    held_out_latents,
)
from engine.train.loop import SNAPSHOT_DIR
from engine.train.release.manifest import (
    eval_curve,
    file_facts,
    hardware,
    latency_ms,
    release_facts,
    released_generator,
)

UNITS = {"psnr_db": "dB, images in [-1, 1], peak-to-peak 2",
         "ssim": "SSIM (11x11 Gaussian window, sigma 1.5), images in [-1, 1]",
         "latent_mse": "mean squared error in the encoder's normalised W+ space",
         "latent_l2": "mean over samples and W+ rows of |w_E - w|_2 in W units"}


def encoder_from_state(state: dict) -> Encoder:
    """The encoder of a training state, with the ``info`` the trainer would export (eval mode, CPU)."""
    EncoderTrainer.check_state(state)
    encoder = Encoder(EncoderConfig.from_dict(state["encoder_arch"]))
    encoder.load_state_dict(state["encoder"])
    cfg = EncoderTrainConfig.from_dict(state["config"])
    step = int(state["step"])
    encoder.info = {"generator_sha256": state["generator"]["sha256"], "generator": state["generator"]["path"],
                    "kimg": step * cfg.batch_size / 1000, "training_steps": step,
                    "training_images": step * cfg.batch_size, "training_time_s": round(float(state["elapsed_s"]), 3),
                    "seed": cfg.seed, "command_line": state.get("command_line", ""), "train_config": cfg.to_dict()}
    return encoder.eval()


def inference_ms(encoder: Encoder, *, runs: int = 50) -> dict:
    """Latency of ``encoder`` on one image at its input size, on one CPU thread: ms median / p95 over ``runs`` (after
    3 calls that warm the allocator up)."""
    x = torch.zeros(1, encoder.cfg.img_channels, encoder.cfg.resolution, encoder.cfg.resolution)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            ms = latency_ms(lambda: encoder(x), runs=runs, warmup=3, digits=2)
    finally:
        torch.set_num_threads(threads)
    return {**ms, "runs": runs, "threads": 1, "input": list(x.shape)}


def release_encoder(source: str | os.PathLike, out_dir: str | os.PathLike, *, eval_n: int = 1024, runs: int = 50,
                    half: bool = True, command_line: str = "") -> dict:
    """Release ``source`` (``RUN/encoder.pt``, ``RUN/snapshots/encoder-*.pt`` or ``RUN/checkpoint.pt`` of ``train
    encoder``) as ``out_dir/encoder.pt`` next to the generator it was trained for (``out_dir/generator.pt``;
    another generator's encoder is refused), with the manifest ``encoder.json``. half: store the weights in
    float16 (half the file; the figures are measured on the stored weights). -> manifest"""
    source, out_dir = Path(source), Path(out_dir)
    kind, obj = read_model_file(source)
    if kind == "torch" and isinstance(obj, dict) and obj.get("format") == EncoderTrainer.state_format:
        encoder = encoder_from_state(obj)
    else:
        encoder = load_encoder(source)
    info = dict(encoder.info)
    g_path, g_sha = released_generator(out_dir, info.get("generator_sha256"), source=source, what="an encoder")
    G = load_generator(g_path)
    check_compatible(encoder, G.cfg)
    storage = torch.float16 if half else torch.float32
    with torch.no_grad():
        for p in encoder.parameters():
            p.copy_(p.to(storage))  # what the file will hold
    ws = held_out_latents(G, eval_n)
    figures = evaluate_encoder(encoder, G, ws)
    baseline = evaluate_encoder(None, G, ws)
    latency = inference_ms(encoder, runs=runs)
    recipe = {**EVAL_RECIPE, "n": eval_n, "seed": EVAL_SEED, "noise_mode": "const"}
    info.update(figures=figures, baseline_w_avg=baseline, eval_recipe=recipe, released_from=source.name)
    out_path = out_dir / DEFAULT_ENCODER
    save_encoder(out_path, encoder, info=info, dtype=storage)
    command = info.get("command_line") or ""
    run_dir = source.parent.parent if source.parent.name == SNAPSHOT_DIR else source.parent
    manifest = {
        **file_facts(out_path), "format": FORMAT, "parameters": sum(p.numel() for p in encoder.parameters()),
        "weights_dtype": str(storage).removeprefix("torch."),
        "architecture": encoder.cfg.to_dict(), "generator_sha256": g_sha, "command": command,
        "seed": info.get("seed"), "train_config": info.get("train_config"), "kimg": info.get("kimg"),
        "training_steps": info.get("training_steps"), "training_time_s": info.get("training_time_s"),
        "hardware": hardware(command=command),
        **release_facts(source, command_line=command_line),
        "held_out": {"recipe": recipe, "encoder": figures, "baseline_w_avg": baseline, "units": UNITS},
        "held_out_curve": eval_curve(run_dir, last_step=info.get("training_steps", math.inf)),
        "inference_ms": latency,
    }
    return write_json(out_dir / f"{Path(DEFAULT_ENCODER).stem}.json", manifest)


__all__ = ["encoder_from_state", "inference_ms", "release_encoder"]
