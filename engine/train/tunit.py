"""Training TUNIT (Baek et al. 2021) on an unlabeled mixture of synthetic face domains, and its held-out figures.

Data, rendered afresh every step: step ``s`` draws ``batch_size`` faces (samples ``s*B .. s*B+B-1`` of the data
seed), each in a domain drawn from ``step_generator(seed, s)``; the domain is never shown to the networks. The
positive view ``x_tf`` follows TUNIT_FACTS §3 (random affine: rotation 20 deg, translation 0.1, shear 10 deg;
scale 0.9-1.1; colour jitter 0.4/0.4/0.4/hue 0.125; flips). Objective and order as
``engine.algorithms.tunit_losses``: steps ``< separated`` train only the guiding network C (MoCo + 5 IIC), then
D, G and C (C's loss x 0.1) with the hinge GAN, R1, reconstruction and style contrast; G_EMA starts as a copy of G
at ``ema_start``; C_EMA follows C every step and takes C's BatchNorm statistics every ``epoch_steps`` steps.
Optimisers as the reference (C: Adam with weight decay 1e-3; G and D: RMSprop with weight decay 1e-4; no decay of
the learning rate). Every random draw of a step comes from ``step_generator(seed, s)``, so a resumed run repeats an
uninterrupted one bit for bit (same thread count).

Held-out figures on faces ``0..n-1`` of ``EVAL_SEED`` in every domain (the synthetic world knows their domains):
``purity`` (share of images whose cluster's majority domain is their own), the cluster -> domain map (majority),
and ``accuracy``: the shipped domain classifier's top-1 on every held-out face translated (G_EMA) to each cluster's
average style (C_EMA codes averaged over the cluster, clusters from C), scored against the cluster's domain.

Run folder (``engine.train.loop``): ``checkpoint.pt`` (training state, atomic), ``tunit.pt`` (latest networks),
``best.pt`` (best held-out accuracy, then purity), ``metrics.csv``, ``eval.csv`` / ``eval.json``, ``config.json``.
``python main.py train tunit --out RUN --clusters K --steps N --batch B --threads 1 --seed 0 --resume auto`` trains;
``python main.py train release-tunit RUN/best.pt`` releases it (``engine.train.release.tunit``).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.algorithms.tunit_losses import (
    TunitWeights,
    copy_buffers,
    discriminator_losses,
    ema_update,
    generator_losses,
    guiding_losses,
    pseudo_labels,
    update_queue,
)
from engine.assets import default_domains_path
from engine.convert.tunit import load_tunit
from engine.errors import ModelFormatError
from engine.files.configs import DictForm
from engine.models.domains import classify, load_domains
from engine.models.tunit import (
    FORMAT,
    Discriminator,
    Generator,
    GuidingConfig,
    GuidingNetwork,
    TunitDiscriminatorConfig,
    TunitGeneratorConfig,
    cluster_labels,
    cluster_styles,
    translate,
    tunit_checkpoint,
)
from engine.synth import sample_params
from engine.train.domains import render_domains
from engine.train.estimator import step_generator
from engine.train.loop import ModelTrainer, check_synthetic, require
from engine.train.release.estimator import held_out

STATE_FORMAT = "face-editor/train-tunit"
STATE_VERSION = 1
MODEL_NAME = "tunit.pt"
METRIC_FIELDS = ("step", "images", "phase", "c_loss", "iic", "moco", "d_loss", "d_gp", "g_loss", "g_adv", "g_rec",
                 "g_style", "img_per_s", "elapsed_s")
EVAL_FIELDS = ("step", "cluster", "domain", "images", "majority_share", "accuracy")
NETWORKS = ("C", "C_EMA", "G", "G_EMA", "D")


@dataclass(frozen=True)
class TunitTrainConfig(DictForm, what="the TUNIT training settings"):
    """A training run; ``seed`` seeds the initialisation, the faces, their domains and the augmentation.

    clusters: K (the guiding network's cluster count). separated: steps that train only C; ema_start: the step at
    which G_EMA becomes a copy of G (then beta 0.999). c_features: C's VGG-style widths, 0 = 2x2 max-pool.
    g_nf / g_downs / g_res / sty_dim / mlp_width: the generator; d_dim / d_max: the discriminator.
    The defaults fit a short CPU run at 64 px: narrow networks and, for a schedule of thousands rather than the
    reference's 200 000 iterations, larger learning rates than its 1e-4 (C 1e-3, G and D 2e-4).
    """

    steps: int = 2200
    batch_size: int = 16
    size: int = 64
    seed: int = 0
    domains: tuple[str, ...] = ("photo", "toon", "sketch")
    clusters: int = 3
    lr: float = 2e-4
    lr_c: float = 1e-3
    separated: int = 1500
    ema_start: int = 1600
    epoch_steps: int = 100
    c_features: tuple[int, ...] = (16, 0, 32, 0, 64, 0, 64, 0)
    sty_dim: int = 32
    g_nf: int = 16
    g_downs: int = 2
    g_res: int = 1
    mlp_width: int = 64
    d_dim: int = 16
    d_max: int = 128
    eval_n: int = 48
    eval_every: int = 300
    checkpoint_every: int = 50
    log_every: int = 10

    def __post_init__(self):
        for name in ("domains", "c_features"):
            cast = str if name == "domains" else int
            object.__setattr__(self, name, tuple(cast(v) for v in getattr(self, name)))
        check_synthetic(self, domains=self.domains)
        require(self, ("steps", "clusters", "epoch_steps", "eval_n", "eval_every", "checkpoint_every", "log_every",
                       "sty_dim", "g_nf", "g_downs", "mlp_width", "d_dim", "d_max"), at_least=1)
        require(self, ("batch_size",), at_least=2)  # references are other images of the batch
        require(self, ("separated",), at_least=0, at_most=self.ema_start)
        require(self, ("lr", "lr_c"), above=0)
        if not any(self.c_features) or min(self.c_features) < 0:
            raise ValueError(f"c_features needs positive widths (0 = max-pool), got {list(self.c_features)}")



def network_configs(cfg: TunitTrainConfig) -> dict:
    """The configs of C, G and D a training config describes (C_EMA / G_EMA share them)."""
    c = GuidingConfig(features=tuple("M" if v == 0 else v for v in cfg.c_features), sty_dim=cfg.sty_dim,
                      output_k=cfg.clusters)
    g = TunitGeneratorConfig(nf=cfg.g_nf, n_downs=cfg.g_downs, n_res=cfg.g_res, sty_dim=cfg.sty_dim,
                             nf_mlp=cfg.mlp_width)
    d = TunitDiscriminatorConfig(img_size=cfg.size, dim_in=cfg.d_dim, max_conv_dim=cfg.d_max, output_k=cfg.clusters)
    return {"C": c, "C_EMA": c, "G": g, "G_EMA": g, "D": d}


def build_networks(cfg: TunitTrainConfig) -> nn.ModuleDict:
    """Fresh networks (C_EMA / G_EMA start as copies of C / G)."""
    cf = network_configs(cfg)
    C = GuidingNetwork(cf["C"], seed=cfg.seed)
    G = Generator(cf["G"], seed=cfg.seed + 1)
    nets = nn.ModuleDict({"C": C, "C_EMA": copy.deepcopy(C), "G": G, "G_EMA": copy.deepcopy(G),
                          "D": Discriminator(cf["D"], seed=cfg.seed + 2)})
    for name in ("C_EMA", "G_EMA"):
        nets[name].requires_grad_(False)
    return nets


class Optimizers:
    """C's Adam and G's / D's RMSprop (the reference's), saved and restored together."""

    def __init__(self, nets: nn.ModuleDict, cfg: TunitTrainConfig):
        self.C = torch.optim.Adam(nets["C"].parameters(), lr=cfg.lr_c, weight_decay=1e-3)
        self.G = torch.optim.RMSprop(nets["G"].parameters(), lr=cfg.lr, weight_decay=1e-4)
        self.D = torch.optim.RMSprop(nets["D"].parameters(), lr=cfg.lr, weight_decay=1e-4)

    def state_dict(self) -> dict:
        return {k: getattr(self, k).state_dict() for k in ("C", "G", "D")}

    def load_state_dict(self, state: dict) -> None:
        for k in ("C", "G", "D"):
            getattr(self, k).load_state_dict(state[k])


# ---- data -----------------------------------------------------------------------------------------------------


def training_batch(cfg: TunitTrainConfig, step: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The un-augmented images of ``step`` and their true domains (for figures only; training never reads them).
    -> [B, 3, S, S] in [-1, 1], [B] domain indices"""
    b = cfg.batch_size
    params = sample_params(b, seed=cfg.seed, start_index=step * b)
    labels = torch.randint(len(cfg.domains), (b,), generator=gen)
    x = torch.empty(b, 3, cfg.size, cfg.size)
    for i, d in enumerate(cfg.domains):
        idx = (labels == i).nonzero().flatten()
        if len(idx):
            x[idx] = render_domains(params[idx.numpy()], size=cfg.size, domains=(d,))
    return x, labels


def flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the images. [B, 3, H, W] -> same"""
    m = (torch.rand(x.shape[0], generator=gen) < 0.5).view(-1, 1, 1, 1)
    return torch.where(m, x.flip(3), x)


def positive_view(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """TUNIT's augmented view: random affine (rotation <= 20 deg, translation <= 0.1, shear <= 10 deg, scale
    0.9-1.1, black fill), colour jitter (brightness, contrast, saturation 0.4, hue 0.125 of a turn), flip.
    [B, 3, H, W] in [-1, 1] -> same"""
    b = x.shape[0]
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(b, generator=gen)  # noqa: E731
    rot, shear = torch.deg2rad(u(-20, 20)), torch.deg2rad(u(-10, 10))
    scale, tx, ty = u(0.9, 1.1), u(-0.2, 0.2), u(-0.2, 0.2)  # translations in [-1, 1] units: 0.1 of the side
    cos, sin, tan = torch.cos(rot), torch.sin(rot), torch.tan(shear)
    # output -> input coordinates: (R S_h s)^-1; the inverse of rotation+shear+scale, written out
    a = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # [B, 2, 2]
    sh = torch.stack([torch.stack([torch.ones(b), tan], 1), torch.stack([torch.zeros(b), torch.ones(b)], 1)], 1)
    m = torch.linalg.inv(a @ sh * scale.view(-1, 1, 1))  # [B, 2, 2]
    theta = torch.cat([m, -(m @ torch.stack([tx, ty], 1).unsqueeze(2))], 2)  # [B, 2, 3]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample((x + 1) / 2, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # [0, 1]
    y = y * u(0.6, 1.4).view(-1, 1, 1, 1)
    grey = (y * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)  # [B, 1, H, W]
    c = u(0.6, 1.4).view(-1, 1, 1, 1)
    y = (grey.mean((2, 3), keepdim=True) + c * (y - grey.mean((2, 3), keepdim=True))).clamp(0, 1)
    s = u(0.6, 1.4).view(-1, 1, 1, 1)
    y = (grey + s * (y - grey)).clamp(0, 1)
    # hue: rotate the chroma plane of YIQ
    h = 2 * math.pi * u(-0.125, 0.125)
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    rot_h = torch.zeros(b, 3, 3)
    rot_h[:, 0, 0] = 1
    rot_h[:, 1, 1], rot_h[:, 1, 2], rot_h[:, 2, 1], rot_h[:, 2, 2] = torch.cos(h), -torch.sin(h), torch.sin(h), \
        torch.cos(h)
    t = torch.linalg.inv(to_yiq) @ rot_h @ to_yiq  # [B, 3, 3]
    y = torch.einsum("bij,bjhw->bihw", t, y).clamp(0, 1)
    return flip(y * 2 - 1, gen)


# ---- evaluation -----------------------------------------------------------------------------------------------


def held_out_images(domains, *, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces ``0..n-1`` of ``EVAL_SEED`` in every domain. -> [D*n, 3, S, S] in [-1, 1], [D*n] domain indices"""
    data = held_out(n=n, size=size, domains=tuple(domains))
    x = torch.cat([data[d][0] for d in domains]).float() / 127.5 - 1
    return x, torch.arange(len(domains)).repeat_interleave(n)


@torch.no_grad()
def evaluate(nets, x: torch.Tensor, labels: torch.Tensor, domain_names, *, classifier=None) -> dict:
    """Held-out figures of ``nets`` (a mapping with C, C_EMA, G_EMA) on images ``x`` [N, 3, S, S] of true domains
    ``labels`` [N] (indices into ``domain_names``): ``purity``, ``cluster_domain`` (majority domain per non-empty
    cluster), ``cluster_sizes``, ``confusion`` (rows: true domain, columns: cluster), and with a domain
    ``classifier``: ``accuracy`` per cluster (top-1 on every image translated to the cluster's average style) and
    their mean ``mean_accuracy``."""
    names = list(domain_names)
    C, C_EMA, G = nets["C"], nets["C_EMA"], nets["G_EMA"]
    modes = {k: nets[k].training for k in ("C", "C_EMA", "G_EMA")}
    for k in modes:
        nets[k].eval()
    try:
        clusters = cluster_labels(C, x)  # [N]
        k = C.cfg.output_k
        confusion = torch.zeros(len(names), k, dtype=torch.long)
        confusion.index_put_((labels, clusters), torch.ones(len(x), dtype=torch.long), accumulate=True)
        sizes = confusion.sum(0)
        majority = confusion.argmax(0)
        out = {"purity": float(confusion.max(0).values.sum()) / len(x), "n": len(x),
               "cluster_sizes": sizes.tolist(), "confusion": confusion.tolist(), "order": names,
               "cluster_domain": {str(c): names[int(majority[c])] for c in range(k) if sizes[c] > 0}}
        if classifier is not None:
            styles = cluster_styles(C_EMA, x, clusters)
            acc = {}
            for c, s in styles.items():
                target = classifier.domain_names.index(out["cluster_domain"][str(c)])
                fake = torch.cat([translate(G, x[i:i + 64], s) for i in range(0, len(x), 64)])
                acc[str(c)] = float((classify(classifier, fake).argmax(1) == target).float().mean())
            out["accuracy"] = acc
            out["mean_accuracy"] = sum(acc.values()) / len(acc)
        return out
    finally:
        for name, mode in modes.items():
            nets[name].train(mode)


def format_figures(fig: dict) -> str:
    """One line per cluster (size, majority domain and its share, translation accuracy), then the totals."""
    lines = []
    for c, size in enumerate(fig["cluster_sizes"]):
        if not size:
            lines.append(f"cluster {c}: empty")
            continue
        share = max(row[c] for row in fig["confusion"]) / size
        acc = fig.get("accuracy", {}).get(str(c))
        lines.append(f"cluster {c}: {size:4d} images, {100 * share:5.1f}% {fig['cluster_domain'][str(c)]}"
                     + (f", translation accuracy {100 * acc:5.1f}%" if acc is not None else ""))
    lines.append(f"purity {100 * fig['purity']:.1f}%" + (f", mean translation accuracy "
                                                         f"{100 * fig['mean_accuracy']:.1f}%"
                                                         if "mean_accuracy" in fig else ""))
    return "\n".join(lines)


# ---- trainer --------------------------------------------------------------------------------------------------


class TunitTrainer(ModelTrainer):
    """C, C_EMA, G, G_EMA, D (``self.model``, a ModuleDict), their optimisers, the MoCo queue and the step counter;
    ``train()`` runs to ``cfg.steps`` (``engine.train.loop``). classifier: the domain classifier for the translation
    accuracy (default: the shipped ``assets/domains.pt``; None: only purity is measured). best.pt: the best
    held-out translation accuracy once the GAN has started, then purity."""

    kind, command = "TUNIT", "train tunit"
    state_format, state_version, config_cls = STATE_FORMAT, STATE_VERSION, TunitTrainConfig
    model_name, model_format, metric_fields, eval_fields = MODEL_NAME, FORMAT, METRIC_FIELDS, EVAL_FIELDS
    format_figures = staticmethod(format_figures)

    def __init__(self, cfg: TunitTrainConfig, *, model: nn.ModuleDict | None = None, classifier="default", **kwargs):
        model = model if model is not None else build_networks(cfg)
        if {k: model[k].cfg for k in NETWORKS} != network_configs(cfg):
            raise ValueError("the networks are not the ones the training config describes")
        for k in NETWORKS:
            model[k].train()
        super().__init__(cfg, model, optimizer=Optimizers(model, cfg), **kwargs)
        self.weights = TunitWeights()
        self.queue = torch.zeros(0, cfg.sty_dim)
        if classifier == "default":
            classifier = load_domains(default_domains_path())
        self.classifier = classifier

    @staticmethod
    def load_model(checkpoint) -> nn.ModuleDict:
        nets = load_tunit(checkpoint).networks
        if missing := [k for k in NETWORKS if k not in nets]:
            raise ModelFormatError(f"the training checkpoint lacks the networks {missing}")
        out = nn.ModuleDict({k: nets[k] for k in NETWORKS})
        for k in ("C_EMA", "G_EMA"):
            out[k].requires_grad_(False)
        return out

    def train_step(self) -> dict:
        """One iteration of the reference's loop on the batch of ``self.step``; returns its losses."""
        cfg, nets, w = self.cfg, self.model, self.weights
        C, C_EMA, G, G_EMA, D = (nets[k] for k in NETWORKS)
        gen = step_generator(cfg.seed, self.step)
        x, _ = training_batch(cfg, self.step, gen)
        x_org, x_tf = flip(x, gen), positive_view(x, gen)
        ref_idx = torch.randperm(cfg.batch_size, generator=gen)
        if self.queue.shape[0] == 0:
            with torch.no_grad():
                self.queue = C_EMA.moco(x_tf).detach()
        gan = self.step >= cfg.separated
        c = guiding_losses(C, C_EMA, x_org, x_tf, self.queue, weights=w)
        c_loss = c["c_loss"] * (0.1 if gan else 1.0)
        self.opt.C.zero_grad(set_to_none=True)
        c_loss.backward()
        self.opt.C.step()
        nan = float("nan")
        stats = {"phase": "gan" if gan else "guiding", "c_loss": c["c_loss"].item(), "iic": c["iic_loss"].item(),
                 "moco": c["moco_loss"].item(), "d_loss": nan, "d_gp": nan, "g_loss": nan, "g_adv": nan,
                 "g_rec": nan, "g_style": nan}
        if gan:
            y_org, y_ref = pseudo_labels(C, x_org, ref_idx)
            x_ref = x_org[ref_idx]
            with torch.no_grad():
                x_fake = G.decode(G.cnt_encoder(x_org), C.moco(x_ref))
            d = discriminator_losses(D, x_ref, x_fake, y_ref, weights=w)
            self.opt.D.zero_grad(set_to_none=True)
            d["d_loss"].backward()
            self.opt.D.step()
            g = generator_losses(G, C, C_EMA, D, x_org, x_ref, y_org, y_ref, self.queue, weights=w)
            self.opt.G.zero_grad(set_to_none=True)
            self.opt.C.zero_grad(set_to_none=True)
            g["g_loss"].backward()
            self.opt.C.step()
            self.opt.G.step()
            stats.update(d_loss=d["d_loss"].item(), d_gp=d["d_gp"].item(), g_loss=g["g_loss"].item(),
                         g_adv=g["g_adv"].item(), g_rec=g["g_imgrec"].item(), g_style=g["g_sty_contrastive"].item())
        losses = [v for k, v in stats.items() if k != "phase" and not math.isnan(v)]
        if not all(math.isfinite(v) for v in losses):
            raise FloatingPointError(f"a loss is not finite at step {self.step}: {stats}")
        self.queue = update_queue(self.queue, c["k_cont"], size=w.queue_size)
        ema_update(C_EMA, C)
        if self.step == cfg.ema_start:
            G_EMA.load_state_dict(G.state_dict())
        elif self.step > cfg.ema_start:
            ema_update(G_EMA, G)
        self.step += 1
        if self.step % cfg.epoch_steps == 0:
            copy_buffers(C_EMA, C)
        return stats

    def held_out_figures(self) -> dict:
        """``evaluate``'s figures of the current networks (the faces are rendered once and kept)."""
        if self._eval_data is None or len(self._eval_data[0]) != self.cfg.eval_n * len(self.cfg.domains):
            self._eval_data = held_out_images(self.cfg.domains, n=self.cfg.eval_n, size=self.cfg.size)
        return evaluate(self.model, *self._eval_data, self.cfg.domains, classifier=self.classifier)

    def eval_rows(self, figures: dict) -> list[dict]:
        rows, accuracy = [], figures.get("accuracy", {})
        for c, size in enumerate(figures["cluster_sizes"]):
            share = max(row[c] for row in figures["confusion"]) / size if size else 0.0
            rows.append({"step": self.step, "cluster": c, "domain": figures["cluster_domain"].get(str(c), ""),
                         "images": size, "majority_share": share, "accuracy": accuracy.get(str(c), "")})
        return rows

    def score(self, figures: dict) -> list:
        gan_started = self.step > self.cfg.ema_start
        return [int(gan_started), figures.get("mean_accuracy", 0.0) if gan_started else 0.0, figures["purity"]]

    def checkpoint(self) -> dict:
        return tunit_checkpoint(dict(self.model.items()), extras=self.extras())

    def model_state(self) -> dict:
        return {**super().model_state(), "queue": self.queue.clone()}

    def load_model_state(self, state: dict) -> None:
        super().load_model_state(state)
        self.queue = state["queue"].clone()

    def postfix(self) -> dict:
        stats = self.stats
        post = {"C": f"{stats['c_loss']:.3f}"}
        if stats["phase"] == "gan":
            post.update(D=f"{stats['d_loss']:.3f}", G=f"{stats['g_loss']:.3f}")
        if self.last_eval:
            post["purity"] = f"{100 * self.last_eval['purity']:.0f}%"
            if "mean_accuracy" in self.last_eval:
                post["acc"] = f"{100 * self.last_eval['mean_accuracy']:.0f}%"
        return post

    def subject(self) -> str:
        c = self.cfg
        return (f"TUNIT ({self.parameters(('C', 'G', 'D'))} parameters, K = {c.clusters}, C only before step "
                f"{c.separated}) on {c.size} px unlabeled {'/'.join(c.domains)} faces")


__all__ = ["TunitTrainConfig", "TunitTrainer", "Optimizers", "network_configs", "build_networks", "training_batch",
           "positive_view", "flip", "held_out_images", "evaluate", "format_figures", "STATE_FORMAT", "MODEL_NAME",
           "NETWORKS"]
