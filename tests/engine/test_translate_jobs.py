"""Translate panel jobs without Qt: shipped targets, target check, style grid, the untranslated face, the model
distance (and its CLI), samples export and a folder of photos translated with the current settings."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.algorithms.layer_swap import model_distance, swap_depth_choices
from engine.algorithms.projection import InversionSettings
from engine.files.checkpoints import save_generator
from engine.files.images import read_png_parameters
from engine.files.storage import file_sha256
from engine.jobs.render import load_model, render_in_worker, render_state
from engine.jobs.translate import (
    DistanceJob,
    SamplesExportJob,
    SourceRenderJob,
    StyleGridJob,
    TargetJob,
    TranslateFolderJob,
    shipped_targets,
)
from engine.models.stylegan2 import Generator
from engine.project import EditState, ModelRef, ProjectError, Source, Translation
from engine.worker import Cancelled, InlineContext
from tests.fakes import TINY_CFG, as_exported, fake_finetune

CFG = TINY_CFG
DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(base, a FreezeFC-like fine-tune of it, an exact copy of the base, a model of another architecture)."""
    folder = tmp_path_factory.mktemp("translate")
    G = Generator(CFG, seed=4).eval()
    base = folder / "base.pt"
    save_generator(base, G)
    T = fake_finetune(G)
    target = folder / "toon.pt"
    save_generator(target, T)
    copy = folder / "copy.pt"
    shutil.copy(base, copy)
    other = folder / "other.pt"
    save_generator(other, Generator(dataclasses.replace(CFG, channels=(8, 8, 8, 8)), seed=1))
    return base, target, copy, other


@pytest.fixture
def ctx(one_thread):
    return InlineContext(device=torch.device("cpu"))


def translated(models, **kw) -> EditState:
    base, target, *_ = models
    return EditState(model=ModelRef(str(base)), seed=3, translation=Translation(ModelRef(str(target)), **kw))


def test_shipped_targets_lists_finetuned_manifests_with_their_model(tmp_path, models):
    shutil.copy(models[1], tmp_path / "toon.pt")
    sha = file_sha256(tmp_path / "toon.pt")
    (tmp_path / "toon.json").write_text(json.dumps({"kind": "finetuned-generator", "domain": "toon", "sha256": sha,
                                                    "base_sha256": "ab" * 32, "model_distance": 0.2}))
    (tmp_path / "sketch.json").write_text(json.dumps({"kind": "finetuned-generator", "domain": "sketch"}))  # no .pt
    shutil.copy(models[0], tmp_path / "generator.pt")
    (tmp_path / "generator.json").write_text(json.dumps({"sha256": "00"}))  # another kind
    (tmp_path / "broken.json").write_text("{not json")
    found = shipped_targets(tmp_path)
    assert [t.domain for t in found] == ["toon"]
    t = found[0]
    assert t.ref == ModelRef(str((tmp_path / "toon.pt").resolve()), sha) and t.base_sha256 == "ab" * 32
    assert t.label() == "Toon" and t.info["model_distance"] == 0.2
    assert shipped_targets(tmp_path / "missing") == []


def test_target_job_pins_the_file_and_refuses_another_architecture(ctx, models):
    base, target, _, other = models
    info = TargetJob(ModelRef(str(base)), ModelRef(str(target)))(ctx)
    assert info.ref.sha256 == file_sha256(target) and info.summary.resolution == CFG.img_resolution
    with pytest.raises(ProjectError, match="architecture"):
        TargetJob(ModelRef(str(base)), ModelRef(str(other)))(ctx)


def test_style_grid_is_reproducible_by_seed_and_each_sample_is_the_state_with_that_style(ctx, models):
    st = translated(models, depth=8, blend=0.5, style_psi=0.7)
    grid = StyleGridJob(st, seed=40, n=4)(ctx)
    assert grid.seeds == (40, 41, 42, 43) and len(grid.images) == 4
    assert all(im.shape == (CFG.img_resolution, CFG.img_resolution, 3) and im.dtype == np.uint8 for im in grid.images)
    for s, im in zip(grid.seeds, grid.images):
        styled = st.replace(translation=dataclasses.replace(st.translation, style=Source(seed=s)))
        np.testing.assert_array_equal(im, render_in_worker(ctx, styled))
    again = StyleGridJob(st, seed=42, n=2)(ctx)  # the next page starting inside the first: same samples
    np.testing.assert_array_equal(again.images[0], grid.images[2])
    assert min(np.abs(a.astype(int) - b.astype(int)).max() for a in grid.images for b in grid.images
               if a is not b) > 0  # different seeds, different appearances
    own = render_in_worker(ctx, st)
    assert all(np.abs(own.astype(int) - im.astype(int)).max() > 0 for im in grid.images)
    with pytest.raises(ProjectError, match="target"):
        StyleGridJob(st.replace(translation=None), seed=0)(ctx)


def test_source_render_is_the_face_without_its_translation(ctx, models):
    st = translated(models, depth=16)
    src = SourceRenderJob(st)(ctx)
    G = load_model(st.model)
    np.testing.assert_array_equal(src.image, render_state(G, st))
    assert np.abs(src.image.astype(int) - render_in_worker(ctx, st).astype(int)).max() > 0


def test_model_distance_is_zero_for_the_base_itself_and_is_the_engines_measure(ctx, models):
    base, target, copy, _ = models
    same = DistanceJob(ModelRef(str(base)), ModelRef(str(copy)), n=6)(ctx)
    assert same.distance == 0.0 and same.profile is None and same.n == 6
    d = DistanceJob(ModelRef(str(base)), ModelRef(str(target)), n=6, depths=True)(ctx)
    G, T = load_model(ModelRef(str(base))), load_model(ModelRef(str(target)))
    assert d.distance == pytest.approx(model_distance(G, T, n=6, seed=0)) and d.distance > 0.05
    assert tuple(d.profile) == swap_depth_choices(G)
    assert d.profile[16] == pytest.approx(model_distance(G, T, n=6, seed=0, depth=16)) and d.profile[16] > 0
    assert DistanceJob(ModelRef(str(base)), ModelRef(str(target)), n=6, depths=True)(ctx) is d  # memoised


def test_samples_export_writes_one_reproducible_png_per_seed(ctx, models, tmp_path):
    st = translated(models, depth=8)
    paths = SamplesExportJob(st, (5, 9), str(tmp_path / "out"))(ctx)
    assert [Path(p).name for p in paths] == ["style00005.png", "style00009.png"]
    grid = StyleGridJob(st, seed=5, n=5)(ctx)
    for p, i in zip(paths, (0, 4)):
        np.testing.assert_array_equal(np.asarray(Image.open(p).convert("RGB")), grid.images[i])
        saved = EditState.from_dict(read_png_parameters(p)["state"])
        assert saved.translation.style == Source(seed=grid.seeds[i])


def test_a_folder_is_translated_photo_by_photo_and_a_photo_without_a_face_is_reported(ctx, models, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(DATA / "astronaut_face.png", photos / "astronaut.png")
    Image.fromarray(np.full((90, 120, 3), 128, np.uint8)).save(photos / "wall.jpg")
    (photos / "notes.txt").write_text("not a photo")
    (tmp_path / "out" / "none").mkdir(parents=True)
    st = translated(models, depth=8, style=Source(seed=2))
    fractions, partials = [], []
    ctx = InlineContext(device=torch.device("cpu"), on_progress=lambda f, _m: fractions.append(f),
                        on_partial=partials.append)
    job = TranslateFolderJob(st, str(photos), str(tmp_path / "out"), dataclasses.replace(InversionSettings(), steps=4))
    summary = job(ctx)
    assert [Path(p).name for p in summary.written] == ["astronaut.png"]
    assert summary.no_face == ("wall.jpg",) and summary.failed == ()
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert not partials  # the inversions' previews stay inside the job
    # the written PNG is the inverted face rendered through the translation, reproducible from its project
    saved = EditState.from_dict(read_png_parameters(summary.written[0])["state"])
    assert saved.translation == as_exported(st).translation and saved.base is not None
    assert saved.photo.path == "astronaut.png"  # names only: no folder of the user's in a shared image
    here = saved.replace(model=st.model, translation=st.translation)  # the files found again by name + sha256
    np.testing.assert_array_equal(np.asarray(Image.open(summary.written[0]).convert("RGB")),
                                  render_in_worker(ctx, here))

    class Stop(InlineContext):
        def cancelled(self):
            return True

        def check(self):
            raise Cancelled

    with pytest.raises(Cancelled):
        job(Stop(device=torch.device("cpu")))
    with pytest.raises(ProjectError, match="no photos"):
        TranslateFolderJob(st, str(tmp_path / "out" / "none"), str(tmp_path / "x"))(ctx)
    with pytest.raises(ProjectError, match="another folder"):
        TranslateFolderJob(st, str(photos), str(photos))(ctx)
    with pytest.raises(ProjectError, match="not a folder"):
        TranslateFolderJob(st, str(tmp_path / "missing"), str(tmp_path / "x"))(ctx)
    with pytest.raises(ProjectError, match="target"):
        TranslateFolderJob(st.replace(translation=None), str(photos), str(tmp_path / "x"))(ctx)


def test_cli_prints_the_distance_and_its_depth_profile_and_refuses_a_bad_file(models, tmp_path, capsys):
    from main import main

    base, target, copy, _ = models
    assert main(["distance", str(base), str(copy), "--n", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "model distance base.pt -> copy.pt: 0.0000" in out and "per swap depth" not in out
    assert main(["distance", str(base), str(target), "--n", "4", "--depths", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    G = load_model(ModelRef(str(base)))
    for depth in swap_depth_choices(G):
        assert f"{depth} px" in out
    assert main(["distance", str(base), str(target), "--n", "4", "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["distance"] > 0.05
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    assert main(["distance", str(base), str(bad), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "bad.pt" in err and err.count("\n") == 1
    assert main(["distance", str(base), str(tmp_path / "missing.pt"), "--device", "cpu"]) == 2
    assert "missing.pt" in capsys.readouterr().err
