"""Photos from files or arrays: any still image Pillow reads, as one upright 8-bit RGB array.

``load_photo`` honours the EXIF orientation and converts every colour mode to RGB:

* grayscale, 1-bit and palette images are expanded to RGB; CMYK goes through its embedded ICC profile when it has
  one, else through Pillow's plain conversion;
* 16-bit and 32-bit integer (I;16, I) and float (F) images are scaled to 8 bit, not clipped: 16-bit data
  (values up to 65535) by 255/65535, float data in [0, 1] by 255, anything else by its own minimum..maximum;
* transparency (LA, RGBA, PA, a palette's transparent colour) is composited over white, since edits and
  exports are opaque;
* the first frame of an animated or multi-page file is used.

Large photos: files above ``max_pixels`` (40 megapixels by default) are reduced while loading, a JPEG by its
decoder's DCT scaling (``Image.draft``: a large JPEG is never decoded at full size) and other formats decoded
whole, then reduced by an integer box factor and Lanczos to fit; ``Photo.downscale`` records the factor.
Files above ``MAX_FILE_PIXELS`` (Pillow's own decompression-bomb limit, about 179 megapixels) are refused: a
non-JPEG that large must be decoded whole before it can be reduced, up to gigabytes, and no camera makes such
photos.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from engine.errors import PhotoError, plain_text

__all__ = ["Photo", "PhotoError", "load_photo", "photo_from_array", "MAX_FILE_PIXELS"]

MAX_FILE_PIXELS = 2 * 89_478_485  # Pillow's default DecompressionBombError threshold, fixed here on purpose
MAX_FILE_BYTES = 1 << 30  # no photo file of up to MAX_FILE_PIXELS takes more
_SRGB = ImageCms.createProfile("sRGB")


@dataclass(frozen=True, eq=False)
class Photo:
    """An upright RGB photo. ``pixels`` is [H, W, 3] uint8, C-contiguous; treat it as read-only."""

    pixels: np.ndarray  # [H, W, 3] uint8, EXIF orientation applied
    path: str | None  # the file it came from, None for an array
    sha256: str  # hex digest of the file's bytes (of shape and pixels for photo_from_array)
    original_size: tuple[int, int]  # (width, height) of the file's full-size image, after EXIF rotation
    downscale: float  # 1.0, or how many times smaller than ``original_size`` ``pixels`` is (original / loaded width)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of ``pixels``."""
        return self.pixels.shape[1], self.pixels.shape[0]


def load_photo(path: str | os.PathLike, *, max_pixels: int = 40_000_000) -> Photo:
    """Read a photo file (JPEG, PNG, WebP, BMP, TIFF or any other still format Pillow reads).

    Raises PhotoError, with a one-line message naming the file, when it is missing, a folder, empty, not an
    image, truncated or damaged, or larger than ``MAX_FILE_PIXELS``. See the module docstring for conversions.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    p = Path(path)
    name = p.name or str(p)
    if not p.exists():
        raise PhotoError(f"{name}: no such file ({p})")
    if p.is_dir():
        raise PhotoError(f"{name} is a folder, not a photo")
    if not p.is_file():
        raise PhotoError(f"{name} is not a regular file (a device, pipe or socket), not a photo")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise PhotoError(f"{name} takes {p.stat().st_size / 2**30:.1f} GB, more than any photo the editor reads "
                         f"({MAX_FILE_BYTES >> 30} GB at most)")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise PhotoError(f"{name}: cannot read the file: {exc.strerror or exc}") from exc
    if not data:
        raise PhotoError(f"{name} is empty (0 bytes)")
    pixels, original, downscale = _decode(data, name, max_pixels)
    return Photo(pixels, str(p), hashlib.sha256(data).hexdigest(), original, downscale)


def photo_from_array(arr: np.ndarray) -> Photo:
    """A photo from a uint8 array [H, W] (gray), [H, W, 1], [H, W, 3] (RGB) or [H, W, 4] (RGBA, composited over
    white). The array is copied."""
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        raise PhotoError(f"a photo array must be uint8, got {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or min(a.shape[:2]) < 1:
        raise PhotoError(f"a photo array must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        alpha = a[:, :, 3:].astype(np.float32) / 255.0
        a = (a[:, :, :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    pixels = np.ascontiguousarray(a, dtype=np.uint8).copy()
    digest = hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()
    height, width = pixels.shape[:2]
    return Photo(pixels, None, digest, (width, height), 1.0)


def _decode(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, tuple[int, int], float]:
    """File bytes -> (pixels, original (w, h) after rotation, downscale)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked just below
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise PhotoError(_too_large(name, f"larger than {MAX_FILE_PIXELS / 1e6:.0f} megapixels")) from None
    except UnidentifiedImageError:
        raise PhotoError(f"{name} is not an image, or in a format that cannot be read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PhotoError(f"{name} is damaged: {_one_line(exc)}") from exc
    with im:
        width, height = im.size
        if width < 1 or height < 1:
            raise PhotoError(f"{name} has no pixels ({width} x {height})")
        if width * height > MAX_FILE_PIXELS:
            raise PhotoError(_too_large(name, f"{width} x {height} pixels ({width * height / 1e6:.0f} megapixels)"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                orientation = im.getexif().get(0x0112, 1)  # a PNG's EXIF may follow its pixels: this can decode
                rotated = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
                if width * height > max_pixels and im.format in ("JPEG", "MPO"):
                    # draft picks the largest DCT reduction (1/2, 1/4, 1/8) that keeps at least the requested
                    # size: asking for half the fitting size yields between half of it and all of it
                    shrink = math.sqrt(max_pixels / (width * height)) / 2
                    im.draft(im.mode, (max(1, int(width * shrink)), max(1, int(height * shrink))))
                im.load()
                ImageOps.exif_transpose(im, in_place=True)
                out = im
                if out.mode.startswith("I;16") and out.width * out.height > max_pixels:
                    out = out.convert("I")  # Pillow resizes 32-bit but not 16-bit images
                if out.mode not in ("P", "PA", "1"):  # shrink first, while there is one channel or 8 bits
                    out = _fit(out, max_pixels)
                out = _to_rgb(out)
                pixels = np.ascontiguousarray(np.asarray(_fit(out, max_pixels), dtype=np.uint8))
        except Image.DecompressionBombError:
            raise PhotoError(_too_large(name, f"larger than {MAX_FILE_PIXELS / 1e6:.0f} megapixels")) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            text = _one_line(exc)
            kind = "truncated" if "truncated" in text.lower() else "damaged"
            raise PhotoError(f"{name} is {kind} and cannot be decoded: {text}") from exc
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise PhotoError(f"{name}: unexpected decoded shape {pixels.shape}")
    return pixels, rotated, rotated[0] / pixels.shape[1]


def _one_line(exc: BaseException) -> str:
    return plain_text(str(exc), capital=False).rstrip(".") or "the decoder gave no reason"


def _too_large(name: str, size: str) -> str:
    return (f"{name} is {size}; photos above {MAX_FILE_PIXELS / 1e6:.0f} megapixels are refused "
            f"(they could be decompression bombs, and would need gigabytes to decode); reduce it in an image editor")


def _fit(im: Image.Image, max_pixels: int) -> Image.Image:
    """The image shrunk (keeping its aspect) to at most ``max_pixels``, or itself if it is small enough."""
    if im.width * im.height <= max_pixels:
        return im
    scale = math.sqrt(max_pixels / (im.width * im.height))
    size = (max(1, int(im.width * scale)), max(1, int(im.height * scale)))
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)  # box-reduces by an integer factor first


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB, see the module docstring."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_to_8bit(np.asarray(im))).convert("RGB")
    if mode == "CMYK":
        icc = im.info.get("icc_profile")
        if icc:
            try:
                return ImageCms.profileToProfile(im, ImageCms.ImageCmsProfile(io.BytesIO(icc)), _SRGB,
                                                 outputMode="RGB")
            except (ImageCms.PyCMSError, OSError):
                pass  # a broken profile: the plain conversion below is still a fair picture
        return im.convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info) \
        or (mode in ("L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "1":
        return im.convert("L").convert("RGB")
    try:
        return im.convert("RGB")
    except ValueError as exc:
        raise OSError(f"colour mode {mode} cannot be converted to RGB ({exc})") from exc


def _to_8bit(a: np.ndarray) -> np.ndarray:
    """One channel of 16/32-bit integers or floats -> uint8 [H, W], scaled (not clipped).

    uint16 (I;16) is 16-bit data: x * 255/65535. int32 (I) within 0..255 is taken as 8-bit, within 0..65535 as
    16-bit. Floats (F) within 0..1 are scaled by 255, within 0..255 kept. Anything else (negative values, wider
    ranges) is stretched from its minimum to its maximum; NaN and infinities become the minimum.
    """
    kind = a.dtype
    x = a.astype(np.float32)
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros(x.shape, dtype=np.uint8)
    lo, hi = float(x[finite].min()), float(x[finite].max())
    x = np.where(finite, x, lo)
    if kind == np.uint16 or (np.issubdtype(kind, np.integer) and lo >= 0 and 255 < hi <= 65535):
        x = x * (255.0 / 65535.0)
    elif np.issubdtype(kind, np.floating) and lo >= 0 and hi <= 1:
        x = x * 255.0
    elif not (lo >= 0 and hi <= 255):
        x = (x - lo) * (255.0 / max(hi - lo, 1e-12))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
