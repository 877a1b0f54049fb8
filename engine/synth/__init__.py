"""The synthetic face world: a fast procedural face renderer with ground-truth StyleFlow attributes.

Public API::

    from engine import synth
    params = synth.sample_params(16, seed=0)                 # [16, NUM_PARAMS] float64, sample i = SeedSequence([0, i])
    images = synth.render_faces(params, size=64, domain="toon")   # [16, 3, 64, 64] float32 RGB in [0, 1]
    cond = synth.attributes(params)                           # [16, 17]: 8 ATTRIBUTE_NAMES + 9 SH lighting coefficients
    x, params, cond = synth.sample_batch(64, size=64, domain="photo", rng_or_seed=0, start_index=0)  # x in [-1, 1]
    synth.write_dataset("out/photo64", domain="photo", n=10000, size=64, seed=0)   # NNNNN.png + labels.json

Domains: ``DOMAINS`` = photo, toon, edges, sketch, painting, pop; the same parameters draw the same face in each.
"""
from engine.synth.dataset import (
                      read_labels,
                      sample_batch,
                      write_dataset,
)
from engine.synth.params import (
                      ATTRIBUTE_NAMES,
                      CONDITION_NAMES,
                      NUM_PARAMS,
                      PARAM_INDEX,
                      PARAM_NAMES,
                      PARAM_RANGES,
                      SH_NAMES,
                      attributes,
                      clip_params,
                      draw_params,
                      light_direction,
                      lighting_sh,
                      sample_params,
                      sample_rng,
                      sh_basis,
                      sh_coefficients,
                      with_params,
)
from engine.synth.scene import Scene, build_scene
from engine.synth.styles import DOMAINS, irradiance, render_faces

__all__ = [
    "render_faces", "build_scene", "Scene", "irradiance", "DOMAINS",
    "sample_params", "draw_params", "sample_rng", "clip_params", "with_params", "attributes", "lighting_sh",
    "light_direction", "sh_basis", "sh_coefficients",
    "PARAM_NAMES", "PARAM_INDEX", "PARAM_RANGES", "NUM_PARAMS", "ATTRIBUTE_NAMES", "SH_NAMES", "CONDITION_NAMES",
    "sample_batch", "write_dataset", "read_labels",
]
