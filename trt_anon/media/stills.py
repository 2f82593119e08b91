"""Photos in and out with Pillow (pillow-heif for HEIC/HEIF): JPEG, PNG, WebP, TIFF, BMP, HEIC and AVIF.

A photo keeps what a viewer shows. Its pixels stay as stored and its EXIF Orientation is written back,
so every viewer turns it as it turned the input (HEIC is decoded upright by libheif and written upright);
the detector sees it as displayed. The rest of its EXIF, its colour profile and its resolution are kept;
location, device and owner tags go (unless ``keep_metadata``), and so do XMP, IPTC and comments, which
carry the same (XMP also names the people in a photo). Thumbnails, previews, depth maps and any other
picture in the file are never written: they would show the faces.
"""
from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, JpegImagePlugin, PngImagePlugin, features

from ..decode.batch import Batch
from ..errors import InputError
from .container import PRIVATE_TAG

# The extension of a photo -> the Pillow format that writes it.
FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
           ".webp": "WEBP", ".heic": "HEIF", ".heif": "HEIF", ".avif": "AVIF"}
WITH_ALPHA = {"PNG", "WEBP", "TIFF", "HEIF", "AVIF"}
LOSSLESS = {"PNG", "BMP", "TIFF"}
# Lossy formats written fresh (no source tables to reuse), at about JPEG 95's fidelity: PSNR on the astronaut
# photo 37.7 (WebP), 38.9 (HEIC), 38.6 (AVIF), JPEG 95 38.3 dB; libheif's default (50) gives 35.5 dB, JPEG 85's.
QUALITY = {"HEIF": 75, "AVIF": 90, "WEBP": 90, "JPEG": 95}
# EXIF orientation -> the display rotation the detector needs (degrees counter-clockwise, as a video's
# display matrix); 2, 4, 5 and 7 are these turns plus a mirror, which does not hide a face from a detector.
ROTATION = {1: 0, 2: 0, 3: 180, 4: 180, 5: 270, 6: 270, 7: 90, 8: 90}
# EXIF tags named like PRIVATE_TAG go, and these: a unique photo id, the computer, and blocks of XMP/IPTC.
PRIVATE_EXIF = re.compile(r"unique|host|xmlpacket|iptc|imageresources", re.I)
# TIFF tags that describe how the input's pixels were stored (a TIFF's EXIF is its first directory), and
# IFD0's pointer to a thumbnail: never copied, the writer describes its own pixels.
STRUCTURE = {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325, 338,
             339, 347, 513, 514, 529, 530, 531, 532}
# PNG text chunks that hold other metadata blocks (ImageMagick's raw EXIF/XMP/IPTC profiles, XMP).
PNG_BLOCKS = re.compile(r"^raw profile type|^xml:com\.adobe\.xmp", re.I)


@functools.lru_cache(maxsize=None)
def heif_support() -> str | None:
    """Register pillow-heif's HEIC/HEIF opener; the name of its HEVC encoder ("": it only reads; None: absent)."""
    try:
        import pillow_heif
    except ImportError:
        return None
    pillow_heif.register_heif_opener()
    return pillow_heif.libheif_info().get("HEIF") or ""


def missing(ext: str) -> str | None:
    """Why photos named ``ext`` cannot be written here, or None when they can."""
    fmt = FORMATS.get(ext.lower())
    if fmt is None:
        return f"{ext} is not a photo format trt_anon writes ({', '.join(sorted(FORMATS))})"
    if fmt == "HEIF" and not heif_support():
        return "HEIC needs pillow-heif with its HEVC encoder (pip install pillow-heif)"
    if fmt in ("AVIF", "WEBP") and not features.check(fmt.lower()):
        return f"this Pillow was built without {'WebP' if fmt == 'WEBP' else fmt} support"
    return None


def output_ext(ext: str) -> str:
    """The extension a photo named ``ext`` is written with by default: its own (.jpeg as .jpg), or .png where
    its format cannot be written here (lossless, keeps alpha, every viewer reads it)."""
    ext = ext.lower()
    return ".png" if missing(ext) else ".jpg" if ext == ".jpeg" else ext


def _private(name: str) -> bool:
    return bool(PRIVATE_TAG.search(name) or PRIVATE_EXIF.search(name))


def clean_exif(exif: Image.Exif, keep: bool) -> Image.Exif:
    """The EXIF to write: IFD0, the Exif and Interop IFDs, without location/device/owner tags unless ``keep``
    (then with GPS). IFD1, the embedded thumbnail, is never written (Pillow writes no IFD1)."""
    out = Image.Exif()
    ifd = ExifTags.IFD
    for tag, value in exif.items():
        if tag in STRUCTURE or tag in (ifd.Exif, ifd.GPSInfo, ifd.Interop):
            continue
        if keep or not _private(ExifTags.TAGS.get(tag, "")):
            out[tag] = value
    sub = {t: v for t, v in exif.get_ifd(ifd.Exif).items()
           if t != ifd.Interop and (keep or not _private(ExifTags.TAGS.get(t, "")))}
    interop = exif.get_ifd(ifd.Interop)
    if interop:
        sub[ifd.Interop] = dict(interop)
    if sub:
        out[ifd.Exif] = sub
    gps = exif.get_ifd(ifd.GPSInfo)
    if keep and gps:
        out[ifd.GPSInfo] = dict(gps)
    return out


@dataclass
class Still:
    """One photo as read: 8-bit RGB as stored (and its alpha), with what writing it back needs."""

    rgb: np.ndarray                  # (H, W, 3) uint8, as stored
    alpha: np.ndarray | None         # (H, W) uint8, or None
    format: str                      # Pillow's name of the input format (JPEG, PNG, HEIF, ...)
    mode: str                        # Pillow's mode of the input (L and LA are written back as grey)
    orientation: int                 # EXIF orientation, 1-8 (HEIC: 1, libheif has turned the pixels)
    exif: Image.Exif
    info: dict = field(default_factory=dict)    # icc_profile, dpi, xmp, PNG text, ... as Pillow read them
    jpeg: dict = field(default_factory=dict)    # a JPEG's quantization tables, subsampling, progressive
    lossless: bool = True            # WebP: VP8L; the lossy formats: False
    images: int = 1                  # pictures in the file; only the main one is written
    depth: int = 8                   # bits per sample of the input
    time = 0.0                       # the one frame's time, for the review page

    @property
    def rotation(self) -> int:
        return ROTATION.get(self.orientation, 0)

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    def batches(self):
        """The decode stage: the photo as one batch of one frame."""
        yield Batch(self.rgb[None], [0], Fraction(1), 0)

    def changes(self, ext: str) -> list[str]:
        """What writing this photo as ``ext`` cannot keep, one warning each."""
        fmt = FORMATS[ext.lower()]
        notes = []
        if self.alpha is not None and fmt not in WITH_ALPHA:
            notes.append(f"alpha channel dropped: {ext} images have none")
        if self.depth > 8:
            notes.append(f"{self.depth}-bit {self.format} photo written with 8 bits per sample")
        if self.mode == "CMYK":
            notes.append("CMYK photo written as RGB")
        if self.images > 1:
            notes.append(f"the file holds {self.images} pictures (previews, depth or gain maps, pages, frames): "
                         "only the main one is anonymized and written")
        return notes


def open_still(path: Path) -> Still:
    """Read a photo, or raise a one-line InputError saying what is wrong with it."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")
    heif_support()  # by content, not name: a phone's .jpg may hold HEIC
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # a 100 MP photo is a photo
            im = Image.open(path)
        with im:
            stored_bits = 16 if any(";16" in str(tile[3]) for tile in im.tile) else 8  # PNG, TIFF: RGB;16B ...
            im.load()
            return _still(im, stored_bits)
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except Image.DecompressionBombError:
        raise InputError(f"{path}: over Pillow's safety limit of {2 * Image.MAX_IMAGE_PIXELS} pixels") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        hint = " (pip install pillow-heif)" if path.suffix.lower() in (".heic", ".heif") and heif_support() is None \
            else ""
        raise InputError(f"{path}: not a photo that Pillow can read{hint} (damaged or truncated? {exc})") from None


def _still(im: Image.Image, stored_bits: int = 8) -> Still:
    mode, depth = im.mode, max(stored_bits, int(im.info.get("bit_depth", 8)))
    if mode.startswith(("I", "F")):  # 16/32-bit grey: scaled to 8 bits, not clipped
        grey = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or grey.max() > 255 else 255.0
        img = Image.fromarray(np.clip(grey * (255.0 / top) + 0.5, 0, 255).astype(np.uint8), "L")
        depth = max(depth, 16)
    else:
        has_alpha = "A" in im.getbands() or "transparency" in im.info
        img = im.convert("RGBA" if has_alpha else "RGB")
    arr = np.asarray(img.convert("RGBA" if img.mode in ("RGBA", "LA") else "RGB"))
    alpha = np.ascontiguousarray(arr[..., 3]) if arr.shape[2] == 4 else None
    if alpha is not None and alpha.min() == 255 and mode in ("P", "PA"):
        alpha = None  # a palette's unused transparency entry
    exif = im.getexif()
    info = {k: im.info[k] for k in ("icc_profile", "dpi", "xmp", "srgb", "gamma", "compression", "chroma",
                                    "nclx_profile") if im.info.get(k) is not None}
    if mode == "CMYK":
        info.pop("icc_profile", None)  # a CMYK profile does not describe the RGB written
    if getattr(im, "text", None):
        info["text"] = dict(im.text)
    jpeg = {}
    if isinstance(im, JpegImagePlugin.JpegImageFile):  # MPO (phones' JPEG with a second picture) too
        jpeg = {"qtables": im.quantization, "subsampling": JpegImagePlugin.get_sampling(im),
                "progressive": bool(im.info.get("progressive"))}
    lossless = im.format in LOSSLESS or (im.format == "WEBP" and _webp_lossless(im))
    # HEIC: depth maps and auxiliary pictures (an HDR gain map) are pictures too
    images = getattr(im, "n_frames", 1) + len(im.info.get("depth_images") or ()) + \
        sum(len(ids) for ids in (im.info.get("aux") or {}).values())
    rgb = np.array(arr[..., :3], order="C")  # a copy: Pillow's array is read-only, and redaction writes
    return Still(rgb, alpha, "JPEG" if jpeg else im.format, mode, int(exif.get(ExifTags.Base.Orientation, 1) or 1),
                 exif, info, jpeg, lossless, images=images, depth=depth)


def _webp_lossless(im: Image.Image) -> bool:
    """Whether a WebP holds a lossless (VP8L) picture: its first image chunk says."""
    fp = im.fp if getattr(im, "fp", None) else open(im.filename, "rb")
    try:
        fp.seek(12)
        head = fp.read(4096)
    finally:
        if fp is not im.fp:
            fp.close()
    lossy, lossless = head.find(b"VP8 "), head.find(b"VP8L")
    return lossless >= 0 and (lossy < 0 or lossless < lossy)


def save_still(photo: Still, rgb: np.ndarray, path: Path, ext: str, keep_metadata: bool) -> None:
    """Write ``rgb`` (the redacted photo, as stored) to ``path`` in the format of ``ext``, with ``photo``'s
    alpha, orientation, colour profile and cleaned metadata."""
    fmt = FORMATS[ext.lower()]
    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if photo.mode in ("L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "F"):
        img = img.convert("L")  # grey in, grey out (a solid fill in colour becomes its grey)
    if photo.alpha is not None and fmt in WITH_ALPHA:
        img.putalpha(Image.fromarray(photo.alpha, "L"))
    info = photo.info
    exif = clean_exif(photo.exif, keep_metadata)
    opts: dict = {"exif": exif.tobytes()} if len(exif) else {}
    if "icc_profile" in info:
        opts["icc_profile"] = info["icc_profile"]
    if keep_metadata and "xmp" in info and fmt in ("JPEG", "WEBP", "HEIF", "AVIF"):  # PNG: in its text, TIFF: a tag
        opts["xmp"] = info["xmp"]
    if fmt in ("JPEG", "PNG", "TIFF", "BMP") and "dpi" in info:
        opts["dpi"] = info["dpi"]
    if fmt == "JPEG":
        if img.mode == "LA":
            img = img.convert("L")
        opts.update(photo.jpeg or {"quality": QUALITY["JPEG"], "subsampling": 0})
        if photo.jpeg and photo.jpeg["subsampling"] == -1:  # grey or CMYK tables: let Pillow choose
            opts.pop("subsampling")
    elif fmt == "PNG":
        opts["pnginfo"] = _png_text(info, keep_metadata)
    elif fmt == "WEBP":
        lossless = photo.lossless or photo.alpha is not None  # alpha written exactly
        opts.update({"lossless": True} if lossless else {"quality": QUALITY["WEBP"]})
    elif fmt == "TIFF":
        compression = info.get("compression", "raw")
        opts["compression"] = compression if compression in ("raw", "tiff_lzw", "tiff_adobe_deflate",
                                                                 "tiff_deflate", "packbits") else "tiff_adobe_deflate"
    elif fmt in ("HEIF", "AVIF"):
        opts["quality"] = QUALITY[fmt]
        if fmt == "HEIF":
            heif_support()
            for k in ("chroma", "nclx_profile"):
                if k in info:
                    opts[k] = info[k]
    elif fmt == "BMP":
        opts.pop("exif", None)
        if img.mode == "LA":
            img = img.convert("L")
    img.save(path, fmt, **opts)


def _png_text(info: dict, keep: bool) -> PngImagePlugin.PngInfo:
    """PNG chunks to write back: text (not location/device or metadata blocks unless ``keep``), sRGB, gamma."""
    png = PngImagePlugin.PngInfo()
    for key, value in info.get("text", {}).items():
        if keep or not (_private(key) or PNG_BLOCKS.search(key)):
            png.add_itxt(key, str(value))
    if "srgb" in info:
        png.add(b"sRGB", bytes([int(info["srgb"])]))
    if "gamma" in info:
        png.add(b"gAMA", int(round(info["gamma"] * 100000)).to_bytes(4, "big"))
    return png


class StillWriter:
    """The encode stage for a photo: takes its one redacted frame, writes it on ``close()``."""

    def __init__(self, photo: Still, path: Path, ext: str, keep_metadata: bool) -> None:
        self.photo, self.path, self.ext, self.keep = photo, path, ext, keep_metadata
        self.name = f"pillow ({FORMATS[ext.lower()]})"
        self.frame: np.ndarray | None = None
        self.last_pts: int | None = None
        self.packet_time = 0.0

    def encode(self, frames, pts: list[int]) -> None:
        self.frame, self.last_pts = frames[0], pts[0]

    def close(self) -> None:
        if self.frame is not None:
            save_still(self.photo, self.frame, self.path, self.ext, self.keep)
