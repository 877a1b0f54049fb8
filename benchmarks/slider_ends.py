"""One face with each attribute slider at both ends and each lighting preset, as the editor renders them (docs).

Each row is an attribute: the slider at the low end of what the generator makes (its faces' 1st percentile), the
face as it is, the slider at the high end (99th percentile); each lighting row is a preset at weight 0 and 1. Every
tile is labelled with the estimator's reading of the face shown and the value asked. Renders through the editor's
jobs (``RenderJob`` / ``AttributeReadJob``, settled), so a tile is what the canvas shows once the slider is let go.

    python benchmarks/slider_ends.py [--seed 4] [--method auto|flow] [--scale 3] --out docs/slider-ends.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--method", default="auto", choices=("auto", "directions", "flow"))
    ap.add_argument("--scale", type=int, default=3, help="tile upscaling (Lanczos) for a readable page")
    ap.add_argument("--out", default="docs/slider-ends.png")
    args = ap.parse_args()
    torch.set_num_threads(2)

    from engine.algorithms.flow_edit import ATTRIBUTES, NUM_LIGHT, STYLEFLOW, AttributeEdit
    from engine.assets import default_estimator_path, default_generator_path
    from engine.files.loading import load_generator
    from engine.jobs.render import AttributeReadJob, RenderJob
    from engine.models.estimator import load_estimator
    from engine.project import EditState
    from engine.train.flow_data import sample_flow_data
    from engine.worker import InlineContext

    ctx = InlineContext(device=torch.device("cpu"))
    base = EditState(seed=args.seed, edit_method=args.method)
    G = load_generator(default_generator_path())
    readings = torch.from_numpy(sample_flow_data(G, load_estimator(default_estimator_path()).eval(), 1000, seed=99,
                                                 batch=250)["cond"])
    made = readings.quantile(torch.tensor([0.01, 0.99]), dim=0)  # [2, 17]: what the generator makes
    first = AttributeReadJob(base)(ctx)

    def tile(state, asked: str, said) -> Image.Image:
        image = RenderJob(state)(ctx).image
        reading = AttributeReadJob(state)(ctx)
        img = Image.fromarray(image).resize((image.shape[1] * args.scale, image.shape[0] * args.scale),
                                            Image.Resampling.LANCZOS)
        tile = Image.new("RGB", (img.width, img.height + 30), "white")
        tile.paste(img, (0, 0))
        draw = ImageDraw.Draw(tile)
        draw.text((4, img.height + 2), asked, fill="black")
        draw.text((4, img.height + 15), said(reading), fill=(90, 90, 90))
        return tile

    def fmt(name, v):
        return f"{v:.0f}" if name in ("yaw", "pitch", "age") else f"{v:.2f}"

    rows = []
    for name in ATTRIBUTES:
        k = NUM_LIGHT + ATTRIBUTES.index(name)
        ends = (float(made[0, k]), float(made[1, k]))

        def said(r, k=k, name=name):
            return f"reads {fmt(name, float(r.current[k]))}"

        row = []
        for value, label in ((ends[0], "low"), (None, "as is"), (ends[1], "high")):
            state = base if value is None else base.replace(edits=(AttributeEdit("attribute", name, value),))
            asked = (f"{name} as is" if value is None else f"{name} {label}: asked {fmt(name, value)}")
            row.append(tile(state, asked, said))
        rows.append(row)

    def lit(r):
        return "SH " + " ".join(f"{v:+.1f}" for v in r.current[1:4])

    for j, preset in enumerate(first.preset_names):
        rows.append([tile(base.replace(edits=(AttributeEdit("lighting", j, w),)) if w else base,
                          f"light {preset}: {w:g}", lit) for w in (0.0, 0.5, 1.0)])
    tw, th = rows[0][0].size
    half = (len(rows) + 1) // 2
    sheet = Image.new("RGB", (2 * 3 * tw + 20, half * th), "white")
    for i, row in enumerate(rows):
        x0 = 0 if i < half else 3 * tw + 20
        for c, t in enumerate(row):
            sheet.paste(t, (x0 + c * tw, (i % half) * th))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"wrote {out} ({sheet.width}x{sheet.height}); layout {STYLEFLOW.describe()[:40]}…", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
