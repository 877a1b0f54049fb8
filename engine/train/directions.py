"""Measuring a generator's edit directions (``engine.algorithms.directions``) with the attribute estimator.

1. Label ``n_fit`` latents with the estimator (``sample_flow_data``) and fit the conditional directions in W
   (``covariance_directions``).
2. On ``n_probe`` other faces, try each direction on every contiguous range of resolution bands (W+ rows 2b and
   2b+1 form band b): one step of one standard deviation each way, read both faces and take the central difference.
   A range's gain is how far its own entry moves per step, its entanglement how far the eight attributes other than
   its own move per unit of that gain (each in its standard deviation). Each entry takes the range with the least
   entanglement among those with at least ``min_gain`` of the best gain; a lighting entry also needs the light to
   change more on the face than around it where any range does that.
3. The chosen moves are scaled to one raw unit of reading per step and their full response matrix is kept for the
   closed loop, with the reach (the mean per-row W distance between two faces) that bounds every edit; an entry
   whose standard deviation needs more than ``MAX_LENGTH`` reaches is reported as not editable.

Returns the ``Directions`` and a report (per entry: rows, gain, entanglement, face/elsewhere change, the range
table) for the manifest.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from engine.algorithms.directions import Directions, covariance_directions, rows_move
from engine.algorithms.flow_layout import STYLEFLOW, ConditionLayout
from engine.train.flow_data import label_images, sample_flow_data
from engine.train.release.generator import quantised


def face_regions(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks [size, size] of an aligned face's inner region (an ellipse over cheeks, eyes and mouth) and of
    what lies well outside the head (background, shoulders), in the synthetic world's alignment."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5
    y, x = c.view(-1, 1), c.view(1, -1)
    inner = (x / 0.19) ** 2 + ((y - 0.02) / 0.27) ** 2 <= 1
    outer = (x / 0.36) ** 2 + ((y - 0.02) / 0.47) ** 2 > 1
    return inner, outer


def band_ranges(num_ws: int) -> list[tuple[int, ...]]:
    """Every contiguous range of resolution bands as its W+ rows (10 rows: 5 bands, 15 ranges)."""
    bands = [tuple(range(b, min(b + 2, num_ws))) for b in range(0, num_ws, 2)]
    return [sum(bands[a:b + 1], ()) for a in range(len(bands)) for b in range(a, len(bands))]


@torch.no_grad()
def calibrate_directions(G, estimator, *, n_fit: int = 6000, n_probe: int = 64, seed: int = 0, batch: int = 128,
                         min_gain: float = 0.5, layout: ConditionLayout = STYLEFLOW,
                         progress: Callable[[str, int, int], None] | None = None) -> tuple[Directions, dict]:
    """Measure ``G``'s edit directions with ``estimator`` (both on the CPU or one device, eval mode). ``seed``
    draws the fitting latents, ``seed + 1`` the probe faces. ``progress(stage, done, total)``."""
    fit = sample_flow_data(G, estimator, n_fit, seed=seed, batch=batch,
                           progress=None if progress is None else lambda d, n: progress("labelling", d, n))
    w_fit, c_fit = torch.from_numpy(fit["w"][:, 0]), torch.from_numpy(fit["cond"])
    d = covariance_directions(w_fit, c_fit)  # [K, w_dim]
    scale = c_fit.std(0)  # [K]
    probe = sample_flow_data(G, estimator, n_probe, seed=seed + 1, batch=batch)
    w0 = torch.from_numpy(probe["w"]).to(G.w_avg.device)  # [F, num_ws, w_dim]
    inner, outer = face_regions(G.img_resolution)
    attrs = torch.arange(layout.num_light, layout.cond_dim)
    k_all = layout.cond_dim

    def read(ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # readings [F, K], images [F, 3, R, R]
        imgs = torch.cat([quantised(G.synthesis(ws[i:i + batch], noise_mode="const")) for i in range(0, len(ws),
                                                                                                      batch)])
        return label_images(estimator, imgs).float().cpu(), imgs.cpu()

    def trial(k: int, rows: tuple[int, ...]) -> dict:
        move = rows_move(d[k], rows, G.num_ws).to(w0)
        step = float(scale[k])
        (up, img_up), (down, img_down) = read(w0 + step * move), read(w0 - step * move)
        slope = ((up - down) / (2 * step)).mean(0)  # [K] raw reading per raw step
        gain = float(slope[k])
        others = attrs[attrs != k]
        ent = float(((slope[others] * scale[k]).abs() / scale[others]).mean() / max(abs(gain), 1e-9))
        change = (img_up - img_down).abs().mean(1).mean(0)  # [R, R]
        locality = float(change[inner].mean() / change[outer].mean().clamp(min=1e-9))
        return {"rows": rows, "gain": round(gain, 4), "entanglement_sd": round(ent, 4),
                "face_vs_elsewhere": round(locality, 3), "slope": slope}

    ranges = band_ranges(G.num_ws)
    moves, columns, chosen_rows, report = [], [], [], {}
    for k in range(k_all):
        trials = []
        for j, rows in enumerate(ranges):
            trials.append(trial(k, rows))
            if progress is not None:
                progress(f"measuring {layout.condition_names[k]}", j + 1, len(ranges))
        best_gain = max(t["gain"] for t in trials)
        if best_gain <= 0:
            raise ValueError(f"no W+ rows move the reading of {layout.condition_names[k]}: the generator does not "
                             "express it, or the estimator does not read it on these faces")
        fit_gain = [t for t in trials if t["gain"] >= min_gain * best_gain]
        if k < layout.num_light and any(t["face_vs_elsewhere"] > 1 for t in fit_gain):
            fit_gain = [t for t in fit_gain if t["face_vs_elsewhere"] > 1]
        pick = min(fit_gain, key=lambda t: t["entanglement_sd"])
        moves.append(rows_move(d[k], pick["rows"], G.num_ws).cpu() / pick["gain"])
        columns.append(pick["slope"] / pick["gain"])
        chosen_rows.append(tuple(pick["rows"]))
        report[layout.condition_names[k]] = {
            "rows": list(pick["rows"]), "gain": pick["gain"],
            "entanglement_sd": pick["entanglement_sd"], "face_vs_elsewhere": pick["face_vs_elsewhere"],
            "ranges": [{key: (list(v) if key == "rows" else v) for key, v in t.items() if key != "slope"}
                       for t in trials]}
    half = len(w_fit) // 2
    reach = float((w_fit[:half] - w_fit[half:2 * half]).norm(dim=1).mean())
    directions = Directions(layout.condition_names, torch.stack(moves), torch.stack(columns, 1), scale,
                            tuple(chosen_rows), reach)
    for name, length, ok in zip(layout.condition_names, directions.length.tolist(), directions.editable):
        report[name] |= {"length_reach_per_sd": round(length, 3), "editable": ok}
    return directions, {"n_fit": n_fit, "n_probe": n_probe, "seed": seed, "min_gain": min_gain,
                        "reach": round(reach, 4), "entries": report}


__all__ = ["face_regions", "band_ranges", "calibrate_directions"]
