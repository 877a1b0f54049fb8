"""Layer-swap translation on the embedded default: how much content it keeps against how much it looks like the target.

For each shipped fine-tuned target (``assets/<domain>.pt``) and each swap depth (0 = the target alone, 8 px ... full),
``--faces`` faces (seeds ``--seed``.., psi 0.7, constant noise) are rendered by the default (the source, a photo)
and translated. Content kept: the attribute estimator's yaw, pitch, expression and glasses on the translation
against the source (mean absolute difference, and the share of glasses / expression calls that agree). Look of the
target domain: the domain classifier's mean probability of the target's domain (and its share of top-1 calls).

Ground truth for scale: the synthetic world renders the same face parameters in every domain, so the same
estimator difference between real synthetic pairs (photo vs the target's domain, ``--faces`` faces of a held-out
seed) is the floor of the content measure, and the classifier's confidence on real renders of the domain its
ceiling. Writes JSON to stdout (progress on stderr).

    python benchmarks/translation.py [--faces 128] [--threads 1] [--mode feature]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONTENT = ("yaw", "pitch", "expression", "glasses")
BINARY = ("expression", "glasses")
FLOOR_SEED = 4242


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=128)
    ap.add_argument("--seed", type=int, default=50_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mode", choices=("feature", "weights"), default="feature")
    ap.add_argument("--blend", type=float, default=0.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from engine.algorithms.flow_edit import attribute_index
    from engine.algorithms.latents import seeds_to_z
    from engine.algorithms.layer_swap import layer_swap, swap_depth_choices
    from engine.assets import ASSETS_DIR, default_domains_path, default_estimator_path, default_generator_path
    from engine.files.loading import load_generator
    from engine.jobs.translate import shipped_targets
    from engine.models.domains import classify, domain_index, load_domains
    from engine.models.estimator import load_estimator
    from engine.synth import sample_batch
    from engine.train.flow_data import label_images
    from engine.train.release.generator import quantised

    G = load_generator(default_generator_path())
    est = load_estimator(default_estimator_path()).eval()
    dom = load_domains(default_domains_path()).eval()
    idx = {a: attribute_index(a) for a in CONTENT}  # columns of the flow-order condition label_images returns

    def read(images):  # [B, 3, R, R] raw -> {attribute: [B]}, as saved 8-bit images
        with torch.no_grad():
            out = label_images(est, quantised(images))
        return {a: out[:, i] for a, i in idx.items()}

    def content(a_read, b_read) -> dict:
        res = {}
        for a in CONTENT:
            if a in BINARY:
                res[f"{a}_agree"] = round(float(((a_read[a] > 0.5) == (b_read[a] > 0.5)).float().mean()), 3)
            else:
                res[f"{a}_mae_deg"] = round(float((a_read[a] - b_read[a]).abs().mean()), 2)
        return res

    def look(images, domain) -> dict:
        p = classify(dom, quantised(images))  # [B, n_domains]
        k = domain_index(dom, domain)
        return {"confidence": round(float(p[:, k].mean()), 3),
                "top1": round(float((p.argmax(1) == k).float().mean()), 3)}

    z = seeds_to_z(range(args.seed, args.seed + args.faces), G.z_dim)
    with torch.no_grad():
        ws = G.mapping(z, truncation_psi=0.7)  # [F, num_ws, w_dim]
        source = G.synthesis(ws, noise_mode="const")
    src = read(source)
    report = {"faces": args.faces, "seeds": [args.seed, args.seed + args.faces - 1], "mode": args.mode,
              "blend": args.blend, "source_look": look(source, "photo"), "targets": {}}
    for shipped in shipped_targets(ASSETS_DIR):
        domain, target_path = shipped.domain, Path(shipped.ref.path)
        T = load_generator(target_path)
        photo = sample_batch(args.faces, size=G.img_resolution, domain="photo", rng_or_seed=FLOOR_SEED)[0]
        other = sample_batch(args.faces, size=G.img_resolution, domain=domain, rng_or_seed=FLOOR_SEED)[0]
        floor = {"content": content(read(photo), read(other)), "look": look(other, domain)}
        rows = {}
        for depth in (0, *swap_depth_choices(G)):
            with torch.no_grad():
                out = torch.cat([layer_swap(G, T, w[None], depth=depth, mode=args.mode, blend=args.blend)
                                 for w in ws])
            rows[str(depth)] = {"content": content(read(out), src), "look": look(out, domain)}
            print(domain, depth, rows[str(depth)], file=sys.stderr)
        report["targets"][domain] = {"file": target_path.name, "real_pairs": floor, "by_depth": rows}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
