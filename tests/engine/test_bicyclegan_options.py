"""BicycleGAN choices the weight shapes do not show (non-linearity, instance norm vs none, dropout, an input-only
U-Net's code size): read from the options file the training writes beside the weights (``opt.txt``,
``train_opt.txt``), refused when nothing says them, and refused when the file, the weights or the arguments
disagree; the options file parser itself."""
from __future__ import annotations

import pytest
import torch

from engine.convert.bicyclegan import (
    load_bicyclegan,
    load_bicyclegan_encoder,
    load_bicyclegan_generator,
)
from engine.convert.training_options import find_training_options, parse_training_options, read_training_options
from engine.errors import ModelFormatError
from engine.files import i2i
from engine.jobs.i2i import cached_i2i
from engine.models.bicyclegan import BicycleEncoderConfig, Encoder, UnetConfig, UnetGenerator, init_weights
from engine.project import ModelRef
from engine.worker import InlineContext

from .i2i_models import bicyclegan_options, training_options_text, write_training_options

pytestmark = pytest.mark.usefixtures("one_thread")

LRELU = UnetConfig(input_nc=3, output_nc=3, nz=4, ngf=4, num_downs=7, nl="lrelu")  # unet_128


def trained_like(cfg: UnetConfig, *, seed: int) -> UnetGenerator:
    """A generator with weights that make the choices visible: kaiming weights, biases 0.1 * N(0, 1) (the default
    init's gain 0.02 makes every output ~0)."""
    G = UnetGenerator(cfg, seed=None)
    init_weights(G, seed=seed, init_type="kaiming")
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return G.eval()


def released(folder, G, E=None, *, name="opt.txt", **more):
    """``folder`` with ``latest_net_G.pth`` (and ``latest_net_E.pth``) and the options file (None: none)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(G.state_dict(), folder / "latest_net_G.pth")
    if E is not None:
        torch.save(E.state_dict(), folder / "latest_net_E.pth")
    if name is not None:
        write_training_options(folder, bicyclegan_options(G, E, **more), name=name)
    return folder


def inputs(cfg: UnetConfig, *, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s = cfg.size_multiple
    return torch.rand(2, cfg.input_nc, s, s, generator=g) * 2 - 1, torch.randn(2, cfg.nz, generator=g)


@pytest.fixture(scope="module")
def G():
    return trained_like(LRELU, seed=3)


@torch.no_grad()
def test_a_lrelu_generator_loads_as_lrelu_through_every_public_path(G, tmp_path):
    folder = released(tmp_path / "edges2x", G)
    x, z = inputs(LRELU)
    expected = G(x, z)
    relu = UnetGenerator(UnetConfig(**{**LRELU.to_dict(), "nl": "relu"}), seed=None)
    relu.load_state_dict(G.state_dict())
    wrong = (relu.eval()(x, z) - expected).abs().mean()
    assert wrong > 0.05  # what loading it as the default relu gave: silently different images
    loaded = [load_bicyclegan_generator(folder / "latest_net_G.pth"), load_bicyclegan(folder)["G"],
              i2i.load_i2i(folder / "latest_net_G.pth").networks["G"], i2i.load_i2i(folder).networks["G"]]
    for net in loaded:
        assert net.cfg == LRELU
        torch.testing.assert_close(net(x, z), expected, rtol=0, atol=0)


def test_without_an_options_file_the_loader_refuses_and_names_the_options(G, tmp_path):
    folder = released(tmp_path / "bare", G, name=None)
    path = folder / "latest_net_G.pth"
    for load in (lambda: load_bicyclegan_generator(path), lambda: load_bicyclegan(folder),
                 lambda: i2i.load_i2i(path), lambda: i2i.load_i2i(folder)):
        with pytest.raises(ModelFormatError) as e:
            load()
        text = str(e.value)
        assert "latest_net_G.pth does not say" in text and "opt.txt" in text
        assert all(f"{name}=" in text for name in ("nl", "norm", "use_dropout"))
    with pytest.raises(ModelFormatError, match=r"use_dropout="):  # every missing choice is named, not only nl
        load_bicyclegan_generator(path, nl="lrelu", norm="instance")
    x, z = inputs(LRELU)
    with torch.no_grad():
        for net in (load_bicyclegan_generator(path, nl="lrelu", norm="instance", use_dropout=False),
                    load_bicyclegan_generator(path, options={"nl": "lrelu", "norm": "instance", "use_dropout": False}),
                    load_bicyclegan(folder, options=bicyclegan_options(G))["G"]):
            torch.testing.assert_close(net(x, z), G(x, z), rtol=0, atol=0)


def test_the_compare_window_job_reports_the_refusal(G, tmp_path):
    """The editor's BicycleGAN row loads through the worker's cache: the refusal text is what the row shows."""
    path = released(tmp_path / "opened", G, name=None) / "latest_net_G.pth"
    ctx = InlineContext(device=torch.device("cpu"))
    with pytest.raises(ModelFormatError, match="does not say its non-linearity"):
        cached_i2i(ctx, ModelRef(path=str(path)))
    write_training_options(path.parent, bicyclegan_options(G))
    assert cached_i2i(ctx, ModelRef(path=str(path))).networks["G"].cfg == LRELU


@pytest.mark.parametrize("more, named", [
    (dict(norm="batch"), "norm: batch"),  # the weights hold no batch-norm parameters
    (dict(nz=8), "nz: 8"),
    (dict(netG="unet_256"), "netG: unet_256"),
    (dict(upsample="bilinear"), "upsample: bilinear"),
    (dict(where_add="input"), "where_add: input"),
    (dict(input_nc=1), "input_nc: 1"),
    (dict(nl="tanh"), "nl"),
    (dict(use_dropout="yes"), "use_dropout should be True or False"),
    (dict(ngf="four"), "ngf should be a whole number"),
    (dict(netG="resnet_9blocks"), "netG: resnet_9blocks"),
])
def test_an_options_file_that_contradicts_the_weights_is_refused(G, tmp_path, more, named):
    folder = released(tmp_path / "contradicted", G, **more)
    with pytest.raises(ModelFormatError, match=named) as e:
        load_bicyclegan_generator(folder / "latest_net_G.pth")
    assert "opt.txt line" in str(e.value)


def test_arguments_that_contradict_the_options_file_or_the_weights_are_refused(G, tmp_path):
    path = released(tmp_path / "args", G) / "latest_net_G.pth"
    with pytest.raises(ModelFormatError, match=r"nl=.relu.*opt\.txt line \d+ says nl: lrelu"):
        load_bicyclegan_generator(path, nl="relu")
    with pytest.raises(ModelFormatError, match=r"nz=5.*weights were made with nz = 4"):
        load_bicyclegan_generator(path, nz=5)
    assert load_bicyclegan_generator(path, nl="lrelu").cfg == LRELU  # agreeing is fine
    with pytest.raises(ModelFormatError, match=r"the options argument says nl: elu"):
        load_bicyclegan_generator(path, options={"nl": "elu"}, nl="lrelu")  # explicit options replace opt.txt


def test_the_encoder_is_checked_against_the_options_file(G, tmp_path):
    E = Encoder(BicycleEncoderConfig(nz=4, nef=4, n_layers=4), seed=2).eval()  # resnet_128
    folder = released(tmp_path / "with_E", G, E)
    nets = load_bicyclegan(folder)
    assert nets["G"].cfg == LRELU and nets["E"].cfg == E.cfg
    folder = released(tmp_path / "other_E", G, E, nef=8)
    with pytest.raises(ModelFormatError, match=r"nef: 8.*nef = 4"):
        load_bicyclegan(folder)
    with pytest.raises(ModelFormatError, match=r"netE: conv_128"):
        load_bicyclegan_encoder(released(tmp_path / "conv_E", G, E, netE="conv_128") / "latest_net_E.pth")


@torch.no_grad()
def test_train_opt_txt_and_both_files(G, tmp_path):
    x, z = inputs(LRELU)
    folder = released(tmp_path / "pix2pix_style", G, name="train_opt.txt")
    torch.testing.assert_close(load_bicyclegan(folder)["G"](x, z), G(x, z), rtol=0, atol=0)
    # opt.txt rewritten by a test run: other non-network options, same network
    write_training_options(folder, bicyclegan_options(G, isTrain=False, name="tiny_test", num_test=10))
    opts = find_training_options(folder, compared=("nl", "norm"))
    assert opts.label == "train_opt.txt and opt.txt" and opts.text("isTrain") == "True"  # train_opt.txt first
    assert opts.text("num_test") == "10" and opts.origin["num_test"].startswith("opt.txt line")
    assert load_bicyclegan_generator(folder / "latest_net_G.pth").cfg == LRELU
    write_training_options(folder, bicyclegan_options(G, nl="relu"))
    with pytest.raises(ModelFormatError, match=r"disagree: train_opt\.txt line \d+ says nl: lrelu, opt\.txt line "
                                                r"\d+ says nl: relu"):
        load_bicyclegan_generator(folder / "latest_net_G.pth")


def test_the_code_size_of_an_input_only_unet_comes_from_the_options_file(tmp_path):
    cfg = UnetConfig(input_nc=1, output_nc=3, nz=6, ngf=2, num_downs=5, where_add="input", nl="elu")
    G = trained_like(cfg, seed=5)
    path = released(tmp_path / "input_only", G) / "latest_net_G.pth"
    assert load_bicyclegan_generator(path).cfg == cfg
    (tmp_path / "input_only" / "opt.txt").write_text(training_options_text({"nl": "elu", "use_dropout": False}))
    with pytest.raises(ModelFormatError, match=r"does not say its code size .*pass nz= \(the encoder's code size\) "
                                                r"or input_nc="):
        load_bicyclegan_generator(path)
    assert load_bicyclegan_generator(path, input_nc=1).cfg == cfg
    with pytest.raises(ModelFormatError, match="input_nc \\+ nz"):
        load_bicyclegan_generator(path, input_nc=1, nz=5)


REAL = """----------------- Options ---------------
               batch_size: 2
          checkpoints_dir: ./checkpoints
                 dataroot: ./datasets/edges2shoes         \t[default: None]
                  gpu_ids: 0,1
                  isTrain: True                          \t[default: None]
         max_dataset_size: inf
                       nl: lrelu                         \t[default: relu]
                       nz: 8
                   suffix:
              use_dropout: True                          \t[default: False]
----------------- End -------------------
"""


def test_the_parser_reads_the_trainers_format():
    opts = parse_training_options(REAL)
    assert opts.values == {"batch_size": "2", "checkpoints_dir": "./checkpoints", "dataroot": "./datasets/edges2shoes",
                           "gpu_ids": "0,1", "isTrain": "True", "max_dataset_size": "inf", "nl": "lrelu", "nz": "8",
                           "suffix": "", "use_dropout": "True"}
    assert (opts.text("nl"), opts.number("nz"), opts.flag("use_dropout")) == ("lrelu", 8, True)
    assert opts.origin["nl"] == "opt.txt line 8" and opts.says("nl") == "opt.txt line 8 says nl: lrelu"
    # Windows line ends, blank lines, a byte-order mark and the older unpadded format read the same
    assert parse_training_options("\ufeff" + REAL.replace("\n", "\r\n\r\n")).values == opts.values
    old = "------------ Options -------------\nnl: lrelu\nnz: 8\n-------------- End ----------------\n"
    assert parse_training_options(old).values == {"nl": "lrelu", "nz": "8"}
    # the three lines the README suggests for the authors' downloads, written by hand
    hand = parse_training_options("nl: relu\nnorm: instance\nuse_dropout: True\n")
    assert (hand.text("nl"), hand.text("norm"), hand.flag("use_dropout")) == ("relu", "instance", True)


@pytest.mark.parametrize("text, message", [
    (REAL.replace("                       nz: 8", "nz = 8"), r"opt\.txt line 9 is not an option line.*nz = 8"),
    (REAL + "               nl: relu\n", r"opt\.txt line 13 gives nl a second time \(opt\.txt line 8"),
    ("----------------- Options ---------------\n\n----------------- End -------------------\n", "holds no options"),
])
def test_malformed_options_files_are_refused_naming_the_line(text, message):
    with pytest.raises(ModelFormatError, match=message):
        parse_training_options(text)


def test_an_unreadable_options_file_beside_the_weights_is_refused(G, tmp_path):
    folder = released(tmp_path / "broken", G, name=None)
    (folder / "opt.txt").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ModelFormatError, match="opt.txt is not a text file"):
        load_bicyclegan_generator(folder / "latest_net_G.pth")
    (folder / "opt.txt").write_text("nl lrelu\n")
    with pytest.raises(ModelFormatError, match=r"opt\.txt line 1 is not an option line"):
        load_bicyclegan(folder)
    assert read_training_options(write_training_options(folder, {"nl": "lrelu"})).values == {"nl": "lrelu"}
