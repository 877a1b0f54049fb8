"""The headless CLI: generate writes reproducible PNGs + W+ latents; info describes a file; errors are one line."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from engine import load_generator
from engine.files.images import read_png_parameters, to_uint8
from tests.conftest import REPO


@pytest.fixture(scope="module")
def model_file(reference_dir, tmp_path_factory):
    fx = torch.load(reference_dir / "stylegan2" / "rosinality_s32.pt", weights_only=True)
    path = tmp_path_factory.mktemp("cli") / "ros32.pt"
    torch.save(fx["checkpoint"], path)
    return path


def _main(*argv):
    return subprocess.run([sys.executable, "main.py", *map(str, argv)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_generate_writes_reproducible_images_and_latents(model_file, tmp_path):
    out = tmp_path / "a"
    r = _main("generate", "--model", model_file, "--seeds", "3-5", "--trunc", "0.7", "--out", out, "--batch", "2")
    assert r.returncode == 0, r.stderr
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == ["seed0003.png", "seed0004.png", "seed0005.png"]
    G = load_generator(model_file)
    for p in pngs:
        with Image.open(p) as im:
            assert im.size == (32, 32) and im.mode == "RGB"
            pixels = np.asarray(im)
        ws = torch.from_numpy(np.load(p.with_suffix(".npy")))
        assert ws.shape == (G.num_ws, G.w_dim)
        with torch.no_grad():
            again = to_uint8(G.synthesis(ws[None], noise_mode="const"))[0]
        assert np.abs(again.astype(int) - pixels.astype(int)).max() <= 1  # the latent reproduces the image
        params = read_png_parameters(p)
        assert params["truncation_psi"] == 0.7 and params["seed"] == int(p.stem[4:])
    r2 = _main("generate", "--model", model_file, "--seeds", "3-5", "--trunc", "0.7", "--out", tmp_path / "b",
               "--quiet")
    assert r2.returncode == 0 and r2.stdout == ""
    for p in pngs:
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes()


def test_info_and_errors(model_file, tmp_path):
    r = _main("info", model_file)
    assert r.returncode == 0 and "rosinality" in r.stdout and "num_ws 8" in r.stdout
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    for argv in (("info", bad), ("generate", "--model", model_file, "--seeds", "9-1", "--out", tmp_path),
                 ("generate", "--model", tmp_path / "missing.pt", "--out", tmp_path)):
        r = _main(*argv)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr


def test_an_error_after_a_progress_bar_starts_its_own_line(tmp_path):
    from tests.conftest import REPO as repo

    data = tmp_path / "face.jpg"
    with Image.open(repo / "tests" / "data" / "astronaut_face.png") as im:
        im.convert("RGB").save(data, quality=90)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    r = _main("invert", truncated, "--out", tmp_path / "out")
    assert r.returncode == 2 and "invert:" in r.stderr  # the bar was drawn before the photo was refused
    error_lines = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and error_lines[0].startswith("error: truncated.jpg is truncated"), r.stderr


def test_an_unexpected_failure_is_one_sentence_with_the_log_path_and_the_traceback_in_the_log(tmp_path):
    env_log = tmp_path / "logs"
    r = subprocess.run([sys.executable, "-c", "import main, engine.cli.info as c; "
                        "c.cmd_info = lambda a: 1 / 0; "
                        "import sys; sys.exit(main.main(['info', 'x.pt']))"],
                       cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "FACE_EDITOR_LOG_DIR": str(env_log)})
    assert r.returncode == 1 and "Traceback" not in r.stderr and "ZeroDivisionError" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Something went wrong inside the engine")
    log_text = (env_log / "face-editor.log").read_text()
    assert "ZeroDivisionError" in log_text and "Traceback" in log_text


def test_synth_command_writes_a_labelled_dataset(tmp_path):
    from engine.synth import read_labels

    r = _main("synth", "--domain", "photo", "--n", "5", "--size", "32", "--out", tmp_path / "ds", "--seed", "3")
    assert r.returncode == 0, r.stderr
    pngs = sorted((tmp_path / "ds").glob("*.png"))
    assert len(pngs) == 5
    with Image.open(pngs[0]) as im:
        assert im.size == (32, 32)
    labels = read_labels(tmp_path / "ds")
    assert len(labels["attributes"]) == 5 and labels["seed"] == 3 and labels["domain"] == "photo"
    r = _main("synth", "--domain", "oil", "--out", tmp_path / "x")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and "oil" in lines[0]


def test_train_attributes_command_writes_a_loadable_estimator(tmp_path):
    from engine.models.estimator import load_estimator

    out = tmp_path / "attr"
    r = _main("train", "attributes", "--out", out, "--steps", "2", "--batch", "6", "--size", "32", "--eval-n", "8",
              "--eval-every", "2", "--threads", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    model = load_estimator(out / "estimator.pt")
    assert model.cfg.input_size == 32
    r = _main("train", "attributes", "--out", tmp_path / "bad", "--steps", "2", "--batch", "2", "--quiet")
    assert r.returncode == 2 and r.stderr.startswith("error: ")
