"""Photo loading: formats, EXIF orientation, colour modes, large files and clear errors for bad files."""
from __future__ import annotations

import hashlib
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from engine.errors import PhotoError
from engine.photos.read import MAX_FILE_PIXELS, load_photo, photo_from_array


def _smooth(h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth RGB test picture [h, w, 3] (lossy codecs keep it well)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)], -1).astype(np.uint8)


def _quadrants(h: int = 32, w: int = 48) -> np.ndarray:
    """Four flat blocks of distinct colours, so a rotation or flip is unambiguous."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (230, 30, 30)
    a[: h // 2, w // 2:] = (30, 230, 30)
    a[h // 2:, : w // 2] = (30, 30, 230)
    a[h // 2:, w // 2:] = (230, 230, 30)
    return a


@pytest.mark.parametrize("fmt, suffix, lossless", [("PNG", ".png", True), ("BMP", ".bmp", True),
                                                   ("TIFF", ".tif", True), ("WEBP", ".webp", False),
                                                   ("JPEG", ".jpg", False)])
def test_formats_round_trip(tmp_path, fmt, suffix, lossless):
    a = _smooth()
    path = tmp_path / f"p{suffix}"
    Image.fromarray(a).save(path, format=fmt, **({} if lossless else {"quality": 95}))
    photo = load_photo(path)
    assert photo.pixels.dtype == np.uint8 and photo.pixels.shape == a.shape and photo.pixels.flags.c_contiguous
    assert photo.original_size == (64, 48) and photo.downscale == 1.0 and photo.size == (64, 48)
    assert photo.path == str(path)
    assert photo.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    err = np.abs(photo.pixels.astype(int) - a).mean()
    assert err == 0 if lossless else err < 3


@pytest.mark.parametrize("orientation, turn", [(3, lambda a: np.rot90(a, 2)), (6, lambda a: np.rot90(a, -1)),
                                               (8, lambda a: np.rot90(a, 1)), (2, lambda a: a[:, ::-1])])
def test_exif_orientation(tmp_path, orientation, turn):
    stored = _quadrants()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    photo = load_photo(path)
    expected = turn(stored)
    assert photo.pixels.shape == expected.shape
    assert photo.original_size == (expected.shape[1], expected.shape[0])
    assert np.abs(photo.pixels.astype(int) - expected).mean() < 4
    # e.g. orientation 6 (display turned 90 degrees clockwise): the stored top-left red block lands top-right
    h, w = expected.shape[:2]
    corner = {3: (h - 2, w - 2), 6: (1, w - 2), 8: (h - 2, 1), 2: (1, w - 2)}[orientation]
    assert np.abs(photo.pixels[corner].astype(int) - (230, 30, 30)).max() < 20


def test_grayscale_and_one_bit(tmp_path):
    gray = _smooth()[:, :, 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    p = load_photo(tmp_path / "g.png").pixels
    assert p.shape == (48, 64, 3) and (p == gray[:, :, None]).all()
    Image.fromarray(gray > 127).save(tmp_path / "b.png")
    p = load_photo(tmp_path / "b.png").pixels
    assert set(np.unique(p)) == {0, 255} and (p[:, :, 0] == np.where(gray > 127, 255, 0)).all()


def test_palette_with_transparency_over_white(tmp_path):
    im = Image.new("P", (8, 4))
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (4, 0, 8, 4))  # right half red, left half index 0 = transparent black
    im.save(tmp_path / "p.png", transparency=0)
    p = load_photo(tmp_path / "p.png").pixels
    assert (p[:, :4] == 255).all() and (p[:, 4:] == (255, 0, 0)).all()


def test_alpha_composited_over_white(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :2, 3] = 255  # opaque red
    rgba[:, 2:4, 3] = 128  # half transparent red
    rgba[:, 4:, 3] = 0  # fully transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    p = load_photo(tmp_path / "a.png").pixels.astype(int)
    assert (p[:, :2] == (255, 0, 0)).all() and (p[:, 4:] == 255).all()
    assert np.abs(p[:, 2:4] - (255, 127, 127)).max() <= 1
    la = Image.fromarray(np.stack([np.zeros((4, 4), np.uint8), np.full((4, 4), 64, np.uint8)], -1))
    assert la.mode == "LA"
    la.save(tmp_path / "la.png")
    assert np.abs(load_photo(tmp_path / "la.png").pixels.astype(int) - 191).max() <= 1  # 25% black over white


def test_cmyk_jpeg(tmp_path):
    Image.fromarray(_quadrants()).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    with Image.open(tmp_path / "c.jpg") as im:
        assert im.mode == "CMYK"
    p = load_photo(tmp_path / "c.jpg").pixels.astype(int)
    assert np.abs(p - _quadrants()).mean() < 6


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 8).reshape(8, 64).astype(np.uint16)
    im = Image.fromarray(ramp)
    assert im.mode == "I;16"
    im.save(tmp_path / "r16.png")
    p = load_photo(tmp_path / "r16.png").pixels
    expected = np.rint(ramp / 257.0)
    assert np.abs(p[:, :, 0].astype(int) - expected).max() <= 1
    assert p.max() == 255 and p.min() == 0 and len(np.unique(p)) > 200  # a clipped image would be mostly 255

    Image.fromarray(ramp.astype(np.int32)).save(tmp_path / "r32.tif")  # mode I with 16-bit values
    assert np.abs(load_photo(tmp_path / "r32.tif").pixels[:, :, 0].astype(int) - expected).max() <= 1


def test_float_images(tmp_path):
    unit = np.linspace(0, 1, 64, dtype=np.float32)[None].repeat(4, 0)
    Image.fromarray(unit).save(tmp_path / "f.tif")
    p = load_photo(tmp_path / "f.tif").pixels[:, :, 0]
    assert p[0, 0] == 0 and p[0, -1] == 255 and abs(int(p[0, 32]) - 129) <= 1
    signed = unit * 2 - 1  # [-1, 1]: stretched from its minimum to its maximum
    Image.fromarray(signed).save(tmp_path / "s.tif")
    p2 = load_photo(tmp_path / "s.tif").pixels[:, :, 0]
    assert np.abs(p2.astype(int) - p).max() <= 1


def test_large_jpeg_reduced_while_decoding(tmp_path, monkeypatch):
    a = np.asarray(Image.fromarray(_quadrants()).resize((2000, 1500), Image.NEAREST))
    Image.fromarray(a).save(tmp_path / "big.jpg", quality=90)
    drafts = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        drafts.append(original_draft(self, mode, size))
        return drafts[-1]

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    photo = load_photo(tmp_path / "big.jpg", max_pixels=100_000)
    assert drafts and drafts[0] is not None, "a large JPEG must be reduced by the decoder (Image.draft)"
    assert drafts[0][1][2] <= 2000 / 4  # decoded at 1/4 or 1/8 scale, never at 2000 x 1500
    h, w = photo.pixels.shape[:2]
    assert 100_000 / 4 <= h * w <= 100_000
    assert photo.original_size == (2000, 1500)
    assert photo.downscale == pytest.approx(2000 / w) and photo.downscale >= 4
    small = np.asarray(Image.fromarray(_quadrants()).resize((w, h), Image.BILINEAR)).astype(int)
    assert np.abs(photo.pixels.astype(int) - small).mean() < 8


def test_large_rotated_jpeg(tmp_path):
    stored = np.asarray(Image.fromarray(_quadrants()).resize((1200, 800), Image.NEAREST))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "big.jpg", quality=90, exif=exif)
    photo = load_photo(tmp_path / "big.jpg", max_pixels=60_000)
    h, w = photo.pixels.shape[:2]
    assert photo.original_size == (800, 1200) and h > w and h * w <= 60_000
    expected = np.asarray(Image.fromarray(np.rot90(stored, -1).copy()).resize((w, h), Image.BOX)).astype(int)
    assert np.abs(photo.pixels.astype(int) - expected).mean() < 8


def test_large_png_reduced(tmp_path):
    Image.fromarray(_smooth(600, 800)).save(tmp_path / "big.png")
    photo = load_photo(tmp_path / "big.png", max_pixels=30_000)
    h, w = photo.pixels.shape[:2]
    assert h * w <= 30_000 and abs(w / h - 4 / 3) < 0.02
    assert photo.downscale == pytest.approx(800 / w)
    expected = np.asarray(Image.fromarray(_smooth(600, 800)).resize((w, h), Image.BOX)).astype(int)
    assert np.abs(photo.pixels.astype(int) - expected).mean() < 2


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height grey pixels, with a one-row image stream (never decoded in full)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [14_000, 20_000])  # above the limit: one below Pillow's own error, one above it
def test_decompression_bomb_refused(tmp_path, side):
    assert side * side > MAX_FILE_PIXELS
    (tmp_path / "bomb.png").write_bytes(_png_header_only(side, side))
    with pytest.raises(PhotoError, match=r"bomb\.png is .*megapixels.*refused"):
        load_photo(tmp_path / "bomb.png")


def test_bad_files(tmp_path):
    with pytest.raises(PhotoError, match="no such file"):
        load_photo(tmp_path / "missing.jpg")
    with pytest.raises(PhotoError, match="is a folder"):
        load_photo(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(PhotoError, match="empty"):
        load_photo(tmp_path / "empty.png")
    (tmp_path / "notes.jpg").write_text("these are not pixels\n" * 20)
    with pytest.raises(PhotoError, match="not an image"):
        load_photo(tmp_path / "notes.jpg")
    Image.fromarray(_smooth(200, 200)).save(tmp_path / "full.jpg", quality=90)
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:2000])
    with pytest.raises(PhotoError, match="cut.jpg is truncated"):
        load_photo(tmp_path / "cut.jpg")
    Image.fromarray(_smooth(200, 200)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(PhotoError, match="cut.png is (truncated|damaged)"):
        load_photo(tmp_path / "cut.png")
    for message in ("no such file", "folder"):  # messages are one line
        try:
            load_photo(tmp_path / "missing.jpg" if message == "no such file" else tmp_path)
        except PhotoError as exc:
            assert "\n" not in str(exc)


def test_photo_from_array():
    a = _smooth()
    photo = photo_from_array(a)
    assert (photo.pixels == a).all() and photo.pixels is not a and photo.path is None
    assert photo.original_size == (64, 48) and photo.downscale == 1.0
    assert photo_from_array(a.copy()).sha256 == photo.sha256
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert photo_from_array(b).sha256 != photo.sha256
    assert (photo_from_array(a[:, :, 0]).pixels == a[:, :, :1]).all()
    rgba = np.concatenate([a, np.zeros_like(a[:, :, :1])], -1)
    assert (photo_from_array(rgba).pixels == 255).all()
    with pytest.raises(PhotoError, match="uint8"):
        photo_from_array(a.astype(np.float32))
    with pytest.raises(PhotoError, match=r"\[H, W"):
        photo_from_array(np.zeros((4, 4, 2), np.uint8))
