"""Inversion quality and CPU time on the embedded default: faces from known latents, inverted again.

The faces: ``--n`` W+ latents drawn like the editor's faces (the encoder trainer's recipe: psi uniform in
[0.5, 1], style mixing with probability 0.5) from a random stream that neither the encoder's training, nor its
held-out evaluation, nor the tuning of the default settings used; rendered with the generator's constant noise,
clamped and quantised to 8 bits like a photo. Each is inverted again by:

* ``optimiser:<method>``: ``invert`` with ``InversionSettings(method=<method>)`` (the other settings at their
  defaults; the default method's row is what the GUI runs);
* ``encoder``: the encoder's W+ alone (``--encoder PATH``, or ``--encoder default`` for the embedded one);
* ``encoder+optimiser``: ``invert`` with the default settings started at the encoder's W+;
* ``mean_w``: the constant guess w_avg (the floor).

Per variant: PSNR (dB, mean / median / min) and SSIM of the reconstruction (rendered with the result's noise maps)
against the target, the PSNR of the same code rendered with the constant noise the editor uses, the latent
distance to the true W+ (``latent_l2``: L2 norm over all rows; ``latent_row_l2``: mean per-row L2) and the CPU
time per image (``time.process_time``, median / p95). Writes JSON to stdout; the target check is mean PSNR >= 28 dB
with p95 CPU time <= 10 s for the default settings.

    OMP_NUM_THREADS=1 python benchmarks/inversion.py [--n 8] [--threads 1] [--encoder default]

``--photos [FOLDER]`` measures real photos instead (default ``tests/data``), as the editor runs them: per photo the
default round trip (a short fit, then the quick tuning, within ``PHOTO_SECONDS``) beside the previous default (400
optimiser steps, no tuning): PSNR / SSIM against the aligned photo, wall and CPU time, the identity distance (dlib's
embedding, ``engine.photos.identity``, when installed) of the reconstruction and of the photo pasted back (the
square feather and the seamless blend, unedited and after an age edit), and the estimator's readings against the
truth where known (``TRUTH``); ``--pti`` adds "keep the person" (the longer tuning, ``TuneJob``) after the fit.

    python benchmarks/inversion.py --photos --threads 2 [--pti]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FACES_SEED = 0xB3C4  # step_generator(FACES_SEED, 3, 0): a stream no training, evaluation or tuning run draws from
TARGET_PSNR_DB = 28.0
TARGET_CPU_S = 10.0


def _p95(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def _summary(rows: list[dict]) -> dict:
    def col(k):
        return [r[k] for r in rows]

    out = {"psnr_db_mean": statistics.fmean(col("psnr")), "psnr_db_median": statistics.median(col("psnr")),
           "psnr_db_min": min(col("psnr")), "ssim_mean": statistics.fmean(col("ssim")),
           "psnr_const_noise_db_mean": statistics.fmean(col("psnr_const")),
           "latent_l2_mean": statistics.fmean(col("latent_l2")),
           "latent_row_l2_mean": statistics.fmean(col("latent_row_l2")),
           "cpu_s_median": statistics.median(col("cpu_s")), "cpu_s_p95": _p95(col("cpu_s"))}
    if "steps" in rows[0]:
        out["steps"] = statistics.median(col("steps"))
    return {k: round(v, 4) for k, v in out.items()}


# ---- real photos ----

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# what is known of the people in the real photos, by file name (tests/data/README.md says who they are)
TRUTH = {"astronaut_face.png": {"age": 38.0, "gender": "female", "glasses": False, "beard": False}}
AGE_EDIT = 20.0  # years added by the "paste-back after an age edit" column


def _reading(estimator, image) -> dict:
    """The estimator's age, gender (probability of male), glasses and beard on a uint8 [R, R, 3] face."""
    from engine.jobs.photo import to_target

    with torch.no_grad():
        p = estimator.predict(to_target(image, "cpu"))
    return {k: round(float(p[k][0]), 3) for k in ("age", "gender", "glasses", "beard") if k in p}


def photo_rows(folder: Path, *, pti: bool, pti_steps: int | None) -> list[dict]:
    """One row per photo in ``folder`` with a face, its best face inverted into the embedded default as the editor
    does by default: ``round_trip`` is the fit (encoder guess, then ``PHOTO_STEPS`` optimiser steps: ``fit``) and the
    quick tuning (``tuning_after``) for the rest of ``PHOTO_SECONDS``; ``fit_only_400`` the previous default (400
    steps, no tuning) for comparison. PSNR/SSIM against the aligned photo, wall and CPU time; identity distances
    (dlib, when installed) to the aligned photo of the reconstruction and to the photo of the pasted-back photo
    (square feather and seamless, unedited and after an age edit of +AGE_EDIT years); the estimator's readings of
    the aligned photo and the reconstruction beside the truth where known. ``pti``: also "keep the person"
    (``TuneSettings``' steps, or ``pti_steps``) after the same fit."""
    import dataclasses
    import tempfile

    from engine.algorithms.flow_edit import AttributeEdit, slider_target
    from engine.algorithms.pivotal import TuneSettings
    from engine.algorithms.projection import InversionSettings
    from engine.assets import default_estimator_path, default_generator_path
    from engine.jobs.photo import PHOTO_STEPS, InvertJob, PasteJob, ScanJob, TuneJob, tuning_after
    from engine.jobs.render import AttributeReadJob
    from engine.models.estimator import load_estimator
    from engine.photos.align import face_transform
    from engine.photos.identity import face_distance, identity_available
    from engine.project import EditState, ModelRef
    from engine.worker import InlineContext

    estimator = load_estimator(default_estimator_path()).eval()
    have_identity = identity_available()
    tunings = tempfile.mkdtemp(prefix="inversion-bench-")
    rows = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES):
        ctx = InlineContext(device=torch.device("cpu"))
        state = EditState(model=ModelRef(str(default_generator_path())))
        scan = ScanJob(str(path), state)(ctx)
        if not scan.faces:
            print(f"{path.name}: no face found, skipped", file=sys.stderr)
            continue
        transform = face_transform(scan.faces[0], size=scan.size, recipe=scan.recipe)
        InvertJob(state, str(path), transform, InversionSettings(steps=2))(ctx)  # warm-up, not timed

        def timed(job):
            wall, cpu = time.perf_counter(), time.process_time()
            out = job(ctx)
            return out, time.perf_counter() - wall, time.process_time() - cpu

        def quality(out, wall, cpu, steps):
            return {"psnr": round(out.psnr, 2), "ssim": round(out.ssim, 4), "wall_s": round(wall, 1),
                    "cpu_s": round(cpu, 1), "steps": steps}

        old, old_wall, old_cpu = timed(InvertJob(state, str(path), transform, InversionSettings()))
        fit, fit_wall, fit_cpu = timed(InvertJob(state, str(path), transform,
                                                 dataclasses.replace(InversionSettings(), steps=PHOTO_STEPS)))
        quick = tuning_after(fit, "quick", person=TuneSettings())  # as the editor decides it
        tuned, tune_wall, tune_cpu = timed(TuneJob(fit.state, settings=quick, folder=tunings))
        out = dataclasses.replace(fit, state=tuned.state, image=tuned.image, psnr=tuned.psnr, ssim=tuned.ssim)
        reading = AttributeReadJob(out.state)(ctx)
        layout = reading.layout
        age = layout.index("age")
        edit = AttributeEdit("attribute", "age", slider_target("age", float(reading.base[age]) + AGE_EDIT,
                                                                float(reading.base[age]), layout=layout))
        row = {"photo": path.name, "size": list(scan.photo.size),
               "round_trip": quality(out, fit_wall + tune_wall, fit_cpu + tune_cpu, fit.steps)
               | {"tuning_steps": tuned.steps},
               "fit": quality(fit, fit_wall, fit_cpu, fit.steps),
               "fit_only_400": quality(old, old_wall, old_cpu, old.steps),
               "readings": {"truth": TRUTH.get(path.name), "aligned": _reading(estimator, out.aligned),
                            "reconstruction": _reading(estimator, out.image),
                            "reconstruction_fit_only_400": _reading(estimator, old.image)}}
        if have_identity:
            photo = scan.photo.pixels
            for name, result in (("round_trip", out), ("fit_only_400", old)):
                aged = result.state.replace(edits=(edit,))
                pasted = {"square": PasteJob(result.state, seamless=False)(ctx).pasted,
                          "seamless": PasteJob(result.state)(ctx).pasted,
                          "square_aged": PasteJob(aged, seamless=False)(ctx).pasted,
                          "seamless_aged": PasteJob(aged)(ctx).pasted}
                row[name]["identity"] = {"reconstruction": round(face_distance(result.aligned, result.image), 3),
                                         **{f"paste_{k}": round(face_distance(photo, v), 3) for k, v in pasted.items()}}
        if pti:
            settings = TuneSettings() if pti_steps is None else TuneSettings(steps=pti_steps)
            kept, kept_wall, kept_cpu = timed(TuneJob(fit.state, settings=settings, folder=tunings))
            row["keep_the_person"] = quality(kept, fit_wall + kept_wall, fit_cpu + kept_cpu, fit.steps) | {
                "tuning_steps": kept.steps, "bytes": kept.bytes}
            if have_identity:
                row["keep_the_person"]["identity_reconstruction"] = round(face_distance(out.aligned, kept.image), 3)
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8, help="faces (default 8)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default="sefa,w,w+", help="optimiser methods to run (comma-separated)")
    ap.add_argument("--generator", default=None, help="generator file (default: the embedded default)")
    ap.add_argument("--encoder", default=None, help="encoder file, or 'default' for the embedded one")
    ap.add_argument("--settings", default="{}", help='JSON overrides of the default settings, e.g. \'{"steps": 200}\'')
    ap.add_argument("--target-noise", choices=("random", "const"), default="random",
                    help="noise of the target renders: 'random' (held-out seeds, unknown to the inversion, like a "
                         "photo's detail; default) or 'const' (the generator's stored maps, as the editor renders)")
    ap.add_argument("--ui2i", action="store_true", help="also run the reference configuration "
                    "(InversionSettings.ui2i: SeFa, 1000 steps, noise optimised; offline loss)")
    ap.add_argument("--photos", metavar="FOLDER", nargs="?", const=str(ROOT / "tests" / "data"),
                    help="instead: the real photos in FOLDER (default tests/data), one row each")
    ap.add_argument("--pti", action="store_true", help="with --photos: also the 'keep the person' tuning")
    ap.add_argument("--pti-steps", type=int, help="with --pti: tuning steps (default: TuneJob's)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.photos is not None:
        rows = photo_rows(Path(args.photos), pti=args.pti, pti_steps=args.pti_steps)
        print(json.dumps({"generator": "embedded default", "threads": args.threads, "age_edit_years": AGE_EDIT,
                          "photos": rows}, indent=1))
        return 0

    from engine.algorithms.latents import make_noise
    from engine.algorithms.projection import METHODS, InversionSettings, invert
    from engine.algorithms.similarity import psnr, ssim
    from engine.assets import default_generator_path
    from engine.files.loading import load_generator
    from engine.train.encoder import EVAL_RECIPE, sample_latents
    from engine.train.stylegan2 import step_generator

    methods = [m for m in args.methods.split(",") if m]
    if unknown := [m for m in methods if m not in METHODS]:
        ap.error(f"unknown methods {unknown}; choose from {METHODS}")
    G = load_generator(args.generator or default_generator_path())
    encoder = None
    if args.encoder:
        from engine.models.encoder import check_compatible, load_encoder

        if args.encoder == "default":
            from engine.assets import default_encoder_path

            args.encoder = str(default_encoder_path())
        encoder = load_encoder(args.encoder).eval()
        check_compatible(encoder, G.cfg)
    base = InversionSettings.from_dict(json.loads(args.settings))

    with torch.no_grad():
        ws_true = sample_latents(G, args.n, step_generator(FACES_SEED, 3, 0), **EVAL_RECIPE)  # [N, num_ws, w_dim]
        if args.target_noise == "const":
            targets = G.synthesis(ws_true, noise_mode="const")
        else:
            targets = torch.cat([G.synthesis(ws_true[i:i + 1], noise=make_noise(G.cfg.noise_resolutions,
                                                                                seed=FACES_SEED + i))
                                 for i in range(args.n)])
        targets = targets.clamp(-1, 1)
        targets = ((targets + 1) * 127.5).round() / 127.5 - 1  # 8-bit, like a photo

    def scores(i, ws, image, cpu_s, steps=None):
        t = targets[i:i + 1]
        with torch.no_grad():
            const = G.synthesis(ws, noise_mode="const").clamp(-1, 1)
        d = ws - ws_true[i:i + 1]
        row = {"psnr": float(psnr(image, t)[0]), "ssim": float(ssim(image, t)[0]),
               "psnr_const": float(psnr(const, t)[0]), "latent_l2": float(d.norm()),
               "latent_row_l2": float(d.norm(dim=2).mean()), "cpu_s": cpu_s}
        return row | ({"steps": steps} if steps is not None else {})

    variants: dict[str, list[dict]] = {}

    def record(name, row):
        variants.setdefault(name, []).append(row)
        print(f"{name} face {len(variants[name]) - 1}: PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.3f}, "
              f"latent {row['latent_l2']:.2f}, {row['cpu_s']:.2f} s CPU", file=sys.stderr)

    invert(G, targets[:1], settings=InversionSettings(method="sefa", steps=2))  # warm-up, not timed
    for i in range(args.n):
        with torch.no_grad():
            mean_ws = G.w_avg.view(1, 1, -1).expand(1, G.num_ws, -1)
            record("mean_w", scores(i, mean_ws, G.synthesis(mean_ws, noise_mode="const").clamp(-1, 1), 0.0))
        for m in methods:
            s = InversionSettings.from_dict(base.to_dict() | {"method": m})
            t0 = time.process_time()
            r = invert(G, targets[i:i + 1], settings=s)
            record(f"optimiser:{m}", scores(i, r.ws, r.image, time.process_time() - t0, r.steps))
        if args.ui2i:
            t0 = time.process_time()
            r = invert(G, targets[i:i + 1], settings=InversionSettings.ui2i())
            record("ui2i", scores(i, r.ws, r.image, time.process_time() - t0, r.steps))
        if encoder is not None:
            t0 = time.process_time()
            with torch.no_grad():
                ws_enc = encoder(targets[i:i + 1])
            enc_s = time.process_time() - t0
            with torch.no_grad():
                image = G.synthesis(ws_enc, noise_mode="const").clamp(-1, 1)
            record("encoder", scores(i, ws_enc, image, enc_s))
            t0 = time.process_time()
            r = invert(G, targets[i:i + 1], settings=base, init_ws=ws_enc)
            record("encoder+optimiser", scores(i, r.ws, r.image, enc_s + time.process_time() - t0, r.steps))

    report = {"generator": str(args.generator or default_generator_path().name), "n": args.n,
              "threads": args.threads, "faces": {**EVAL_RECIPE, "stream": f"step_generator({FACES_SEED}, 3, 0)",
                                                  "noise": args.target_noise, "quantised": "8-bit"},
              "encoder": args.encoder, "settings": base.to_dict(),
              "variants": {k: _summary(v) for k, v in variants.items()}}
    default = report["variants"].get(f"optimiser:{base.method}")
    if default is not None:
        report["target"] = {"psnr_db": TARGET_PSNR_DB, "cpu_s": TARGET_CPU_S, "variant": f"optimiser:{base.method}",
                            "met": default["psnr_db_mean"] >= TARGET_PSNR_DB and default["cpu_s_p95"] <= TARGET_CPU_S}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
