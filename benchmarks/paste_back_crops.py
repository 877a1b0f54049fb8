"""Crops of the paste-back's border, before (the crop square's feather) and after (the seamless blend), for the docs.

Reads a project of an inverted photo (``main.py invert PHOTO --out FOLDER`` writes one), pastes the face back
both ways, unedited and after an age edit of ``--age`` years, and writes, under ``--out``:

* ``paste_back_before.png`` / ``paste_back_after.png``: the whole pasted region (the crop quad's bounding box and a
  margin), the unedited face above the aged one, magnified ``--zoom`` times with nearest-neighbour pixels, so each
  photo pixel stays visible (100 % zoom, enlarged);
* ``paste_back_border.png``: the two side by side, with the photo itself on the left.

    python benchmarks/paste_back_crops.py out/astronaut_face.fproj --out docs/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _region(quad, shape, margin: float) -> tuple[int, int, int, int]:
    q = np.array(quad)
    lo, hi = q.min(0), q.max(0)
    pad = (hi - lo) * margin
    x0, y0 = np.maximum(0, np.floor(lo - pad)).astype(int)
    x1, y1 = np.minimum([shape[1], shape[0]], np.ceil(hi + pad)).astype(int)
    return x0, y0, x1, y1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("project", help="a project of an inverted photo (.fproj)")
    ap.add_argument("--out", default=str(ROOT / "docs"), help="folder for the PNGs (default docs/)")
    ap.add_argument("--age", type=float, default=20.0, help="years the edited row adds (default 20)")
    ap.add_argument("--zoom", type=int, default=3, help="magnification, nearest-neighbour (default 3)")
    ap.add_argument("--margin", type=float, default=0.05, help="margin around the crop quad, in its sides")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    from engine.algorithms.flow_edit import AttributeEdit, slider_target
    from engine.jobs.photo import PasteJob, photo_of
    from engine.jobs.render import AttributeReadJob
    from engine.project import read_project
    from engine.worker import InlineContext

    state, _ = read_project(args.project)
    if state.photo is None:
        ap.error(f"{args.project} holds no photo: invert one first (main.py invert PHOTO --out FOLDER)")
    ctx = InlineContext(device=torch.device("cpu"))
    reading = AttributeReadJob(state)(ctx)
    age = float(reading.base[reading.layout.index("age")])
    aged = state.replace(edits=(AttributeEdit("attribute", "age", slider_target("age", age + args.age, age,
                                                                                  layout=reading.layout)),))
    photo = photo_of(ctx, state.photo).pixels
    x0, y0, x1, y1 = _region(state.photo.quad, photo.shape, args.margin)

    def crop(image):
        c = image[y0:y1, x0:x1]
        return np.repeat(np.repeat(c, args.zoom, axis=0), args.zoom, axis=1)

    def column(seamless):
        rows = [crop(PasteJob(s, seamless=seamless)(ctx).pasted) for s in (state, aged)]
        gap = np.full((8, rows[0].shape[1], 3), 255, np.uint8)
        return np.concatenate([rows[0], gap, rows[1]], axis=0)

    before, after = column(False), column(True)
    original = crop(photo)
    original = np.concatenate([original, np.full((8 + original.shape[0], original.shape[1], 3), 255, np.uint8)])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(before).save(out / "paste_back_before.png")
    Image.fromarray(after).save(out / "paste_back_after.png")
    sep = np.full((before.shape[0], 8, 3), 255, np.uint8)
    Image.fromarray(np.concatenate([original, sep, before, sep, after], axis=1)).save(out / "paste_back_border.png")
    print(f"wrote paste_back_before.png, paste_back_after.png and paste_back_border.png to {out} "
          f"(region x {x0}-{x1}, y {y0}-{y1}, x{args.zoom}; age {age:.0f} -> {age + args.age:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
