"""Still images keep what they had: alpha kept as it was while the colour is mosaicked,
the input's format kept where FFmpeg can write it, one warning where something had to change."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import cell_deviation
from PIL import ExifTags, Image, ImageOps, JpegImagePlugin
from skimage import data
from synth import FACE

import trt_anon


def heif_support() -> None:
    import pillow_heif
    pillow_heif.register_heif_opener()


def alpha_plane() -> np.ndarray:
    """Transparent left strip, half-transparent bottom, opaque over the face."""
    a = np.full((512, 512), 255, np.uint8)
    a[:, :100] = 0
    a[400:] = 128
    return a


def write(path, codec: str, pix_fmt: str, options: dict | None = None, alpha: bool = True) -> None:
    rgba = np.dstack([data.astronaut(), alpha_plane() if alpha else np.full((512, 512), 255, np.uint8)])
    with av.open(str(path), "w", format="image2") as out:
        s = out.add_stream(codec, rate=1, options=options or {})
        s.width, s.height, s.pix_fmt = 512, 512, pix_fmt
        frame = av.VideoFrame.from_ndarray(rgba, format="rgba").reformat(format=pix_fmt)
        frame.pts = 0
        out.mux(s.encode(frame))
        out.mux(s.encode(None))


def read(path) -> tuple[str, np.ndarray]:
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        return frame.format.name, frame.to_ndarray(format="rgba")


@pytest.mark.parametrize("name,codec,pix_fmt,options", [
    ("rgba.png", "png", "rgba", None),
    ("rgba.webp", "libwebp", "bgra", {"lossless": "1"}),
    ("rgba.tif", "tiff", "rgba", None),
])
def test_alpha_kept_and_colour_mosaicked(tmp_path, name, codec, pix_fmt, options):
    src = tmp_path / name
    write(src, codec, pix_fmt, options)
    report = trt_anon.process(src)
    assert report.output == str(tmp_path / name.replace(".", ".anon.")) and not report.warnings
    fmt, img = read(report.output)
    assert img[..., 3].tolist() == alpha_plane().tolist(), f"{fmt}: alpha changed"
    assert cell_deviation(img[..., :3], FACE) < 1.0  # the face, mosaicked
    opaque = alpha_plane() > 0
    orig = data.astronaut().astype(np.int16)
    corner = np.s_[420:, 420:]
    assert np.abs(orig[corner] - img[corner][..., :3])[opaque[corner]].max() == 0  # the rest untouched


def test_lossy_webp_stays_webp(tmp_path):
    src = tmp_path / "photo.webp"
    write(src, "libwebp", "yuv420p", {"quality": "85"}, alpha=False)
    report = trt_anon.process(src)
    assert report.output == str(tmp_path / "photo.anon.webp") and not report.warnings
    with av.open(report.output) as c:
        assert c.streams.video[0].codec_context.name == "webp"
    fmt, img = read(report.output)
    assert cell_deviation(img[..., :3], FACE) < 4.0


def test_alpha_into_jpeg_is_one_warning(tmp_path):
    src = tmp_path / "rgba.png"
    write(src, "png", "rgba")
    report = trt_anon.process(src, tmp_path / "flat.jpg")
    assert report.warnings == ["alpha channel dropped: .jpg images have none"]
    fmt, img = read(report.output)
    assert fmt == "yuvj444p" and (img[..., 3] == 255).all()  # a JPEG without alpha, opaque everywhere
    assert cell_deviation(img[..., :3], FACE) < 4.0  # the face, mosaicked
    corner = np.s_[420:, 420:]  # the colour kept where the input was half transparent
    assert np.abs(data.astronaut()[corner].astype(np.int16) - img[corner][..., :3]).mean() < 4.0


def test_webp_without_a_webp_encoder_becomes_png_with_one_warning(tmp_path, monkeypatch):
    from trt_anon.media import stills
    src = tmp_path / "rgba.webp"
    write(src, "libwebp", "bgra", {"lossless": "1"})
    check = stills.features.check
    monkeypatch.setattr(stills.features, "check", lambda feature: feature != "webp" and check(feature))
    report = trt_anon.process(src)
    assert report.output == str(tmp_path / "rgba.anon.png")
    assert report.warnings == [".webp written as .png: this Pillow was built without WebP support"]
    assert read(report.output)[1][..., 3].tolist() == alpha_plane().tolist()
    with pytest.raises(trt_anon.OutputError, match="cannot write .webp"):
        trt_anon.process(src, tmp_path / "asked.webp")
    assert not (tmp_path / "asked.webp").exists()


def test_jpeg_name_gets_jpeg_bytes(tmp_path):
    src = tmp_path / "rgb.png"
    write(src, "png", "rgb24", alpha=False)
    report = trt_anon.process(src, tmp_path / "out.jpeg")
    with av.open(report.output) as c:
        assert c.streams.video[0].codec_context.name == "mjpeg"  # was PNG data under a .jpeg name


# --- phone photos: EXIF orientation, HEIC/AVIF, metadata -------------------------------------------------------

ORIENT = Image.Transpose
# EXIF orientation -> the transpose that stores a displayed picture that way (the inverse of what viewers apply)
STORE = {2: ORIENT.FLIP_LEFT_RIGHT, 3: ORIENT.ROTATE_180, 4: ORIENT.FLIP_TOP_BOTTOM, 5: ORIENT.TRANSPOSE,
         6: ORIENT.ROTATE_90, 7: ORIENT.TRANSVERSE, 8: ORIENT.ROTATE_270}
PORTRAIT = np.s_[:, :400]   # the astronaut as a portrait photo, 400 wide and 512 tall as displayed
DATE = "2026:05:17 10:31:02"


def phone_exif(orientation: int) -> Image.Exif:
    """What a phone writes: orientation, camera, serial, capture time, GPS position."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = "Apple", "iPhone 15 Pro"
    exif[ExifTags.Base.Software] = "17.4.1"
    exif[ExifTags.IFD.Exif] = {ExifTags.Base.DateTimeOriginal: DATE, ExifTags.Base.BodySerialNumber: "F2LX81",
                               ExifTags.Base.LensModel: "iPhone 15 Pro back camera", ExifTags.Base.FNumber: 1.78}
    exif[ExifTags.IFD.GPSInfo] = {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.5)}
    return exif


def face_mask() -> np.ndarray:
    mask = np.zeros((512, 400), bool)
    x1, y1, x2, y2 = FACE
    mask[y1:y2, x1:x2] = True
    return mask


def stored(display: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores for ``display`` shown with ``orientation``."""
    img = Image.fromarray(display)
    return np.asarray(img.transpose(STORE[orientation]) if orientation in STORE else img)


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def write_photo(path, orientation: int, rgba: bool = False, **options) -> np.ndarray:
    """A portrait photo stored turned by ``orientation``, with a phone's EXIF; returns it as displayed."""
    display = data.astronaut()[PORTRAIT]
    if rgba:
        display = np.dstack([display, alpha_plane()[PORTRAIT]])
    heif_support()
    # EXIF as bytes: pillow-heif and Pillow's AVIF writer turn the orientation into HEIF's irot/imir, as phones do
    Image.fromarray(stored(display, orientation)).save(path, exif=phone_exif(orientation).tobytes(), **options)
    assert np.array_equal(np.asarray(ImageOps.exif_transpose(Image.open(path)))[..., :3].shape, display[..., :3].shape)
    return display


def shown(path) -> np.ndarray:
    """The picture as a viewer shows it (pillow-heif has turned a HEIC already)."""
    return np.asarray(ImageOps.exif_transpose(Image.open(path)))


def check_photo(out, src, fmt: str, max_dev: float, max_bg: float) -> Image.Image:
    """The output shows what the input showed (upright), its face mosaicked, the rest as it was, and keeps its
    EXIF but the location and device tags."""
    img = Image.open(out)
    assert img.format == fmt
    before, after = shown(src)[..., :3].astype(int), shown(out)[..., :3]
    assert after.shape == before.shape == (512, 400, 3), "shown turned: orientation lost"
    # the mosaic's grid is aligned to the pixels as written: measure the face there
    as_written = np.asarray(img.convert("RGB"))
    turn = img.getexif().get(ExifTags.Base.Orientation, 1)
    assert cell_deviation(as_written, box_of(stored(face_mask(), turn))) < max_dev, "face not mosaicked"
    x1, y1, x2, y2 = FACE
    away = np.ones((512, 400), bool)
    away[max(0, y1 - 60):y2 + 60, max(0, x1 - 60):x2 + 60] = False
    assert np.abs(after - before)[away].mean() < max_bg, "the rest changed"
    exif = img.getexif()
    assert ExifTags.Base.Make not in exif and ExifTags.Base.Model not in exif and ExifTags.Base.Software not in exif
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    assert sub.get(ExifTags.Base.DateTimeOriginal) == DATE and sub.get(ExifTags.Base.FNumber) == 1.78
    assert ExifTags.Base.BodySerialNumber not in sub and ExifTags.Base.LensModel not in sub
    assert not exif.get_ifd(ExifTags.IFD.GPSInfo)
    return img


@pytest.mark.parametrize("ext,fmt,orientation,options,max_dev", [
    *[(".jpg", "JPEG", o, {"quality": 90}, 4.0) for o in (3, 6, 8, 2, 5, 7)],
    *[(".png", "PNG", o, {}, 1.0) for o in (3, 6, 8)],          # EXIF in PNG's eXIf chunk
    *[(".webp", "WEBP", o, {"quality": 90}, 4.0) for o in (3, 6, 8)],
])
def test_phone_photo_keeps_its_orientation_and_loses_location_and_device(tmp_path, ext, fmt, orientation, options,
                                                                          max_dev):
    src = tmp_path / f"IMG_0001{ext}"
    write_photo(src, orientation, **options)
    report = trt_anon.process(src)
    assert report.output == str(tmp_path / f"IMG_0001.anon{ext}") and not report.warnings
    assert report.frames_with_faces == 1
    img = check_photo(report.output, src, fmt, max_dev, max_bg=1.0)
    assert img.getexif()[ExifTags.Base.Orientation] == orientation   # the pixels stay as stored, the tag too


def test_jpeg_keeps_its_quality_tables(tmp_path):
    src = tmp_path / "photo.jpg"
    write_photo(src, 6, quality=70, subsampling="4:2:0")
    out = trt_anon.process(src).output
    a, b = Image.open(src), Image.open(out)
    assert b.quantization == a.quantization and JpegImagePlugin.get_sampling(b) == JpegImagePlugin.get_sampling(a)
    assert 0.8 < Path(out).stat().st_size / src.stat().st_size < 1.2


def test_keep_metadata_keeps_location_and_device_but_never_the_thumbnail(tmp_path):
    src = tmp_path / "photo.jpg"
    write_photo(src, 6, quality=90)
    with_thumb = tmp_path / "thumb.jpg"
    exif_with_thumbnail(src, with_thumb)
    assert b"\xff\xd8" in Image.open(with_thumb).info["exif"], "test photo has no EXIF thumbnail"
    for keep in (False, True):
        out = tmp_path / f"out{keep}.jpg"
        trt_anon.process(with_thumb, out, keep_metadata=keep)
        exif = Image.open(out).getexif()
        assert (exif.get(ExifTags.Base.Make) == "Apple") is keep
        assert bool(exif.get_ifd(ExifTags.IFD.GPSInfo)) is keep
        assert b"\xff\xd8" not in Image.open(out).info["exif"], "the unredacted thumbnail was written"
        assert not exif.get_ifd(ExifTags.IFD.IFD1)


def exif_with_thumbnail(src, dst) -> None:
    """``src`` with an EXIF IFD1 holding a JPEG thumbnail of the whole, unredacted photo (as cameras write)."""
    import io
    import struct
    thumb = io.BytesIO()
    Image.open(src).resize((96, 128)).save(thumb, "JPEG", quality=80)
    tiff = Image.open(src).getexif().tobytes()[6:]           # b"II*\0" / b"MM\0*" + IFD0 ...
    end = "<" if tiff[:2] == b"II" else ">"
    # append IFD1 (2 entries: the thumbnail's offset and length) and link IFD0's "next IFD" to it
    n0 = struct.unpack(end + "H", tiff[8:10])[0]
    next_at = 10 + 12 * n0
    ifd1_at = len(tiff)
    data_at = ifd1_at + 2 + 2 * 12 + 4
    ifd1 = struct.pack(end + "H", 2) + struct.pack(end + "HHII", 0x0201, 4, 1, data_at) + \
        struct.pack(end + "HHII", 0x0202, 4, 1, len(thumb.getvalue())) + struct.pack(end + "I", 0)
    tiff = tiff[:next_at] + struct.pack(end + "I", ifd1_at) + tiff[next_at + 4:] + ifd1 + thumb.getvalue()
    Image.open(src).save(dst, "JPEG", quality=90, exif=b"Exif\0\0" + tiff)


@pytest.mark.parametrize("ext,fmt,orientation", [(".heic", "HEIF", 6), (".heic", "HEIF", 8), (".avif", "AVIF", 6),
                                                 (".avif", "AVIF", 3)])
def test_heic_and_avif_stay_photos(tmp_path, ext, fmt, orientation):
    src = tmp_path / f"IMG_0002{ext.upper()}"
    write_photo(src, orientation, quality=90)
    report = trt_anon.process(src)
    assert report.output == str(tmp_path / f"IMG_0002.anon{ext}") and not report.warnings
    assert report.backends["encode"] == f"pillow ({fmt})"
    check_photo(report.output, src, fmt, max_dev=4.0, max_bg=2.0)


@pytest.mark.parametrize("ext,fmt", [(".heic", "HEIF"), (".avif", "AVIF")])
def test_heic_and_avif_keep_alpha(tmp_path, ext, fmt):
    src = tmp_path / f"cutout{ext}"
    display = write_photo(src, 6, rgba=True, quality=90)
    report = trt_anon.process(src)
    assert not report.warnings
    check_photo(report.output, src, fmt, max_dev=4.0, max_bg=2.0)
    alpha = shown(report.output)[..., 3].astype(int)
    assert np.abs(alpha - display[..., 3]).max() <= 4   # lossy formats code alpha too


def test_heic_from_the_cli_is_quiet(tmp_path):
    src = tmp_path / "IMG_0003.HEIC"
    write_photo(src, 6, quality=90)
    r = subprocess.run([sys.executable, "-m", "trt_anon", str(src), "-q"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stderr == "" and r.stdout == "", r.stderr
    assert Image.open(tmp_path / "IMG_0003.anon.heic").format == "HEIF"


def test_heic_without_an_encoder_is_written_as_png_with_one_warning(tmp_path, monkeypatch):
    from trt_anon.media import stills
    src = tmp_path / "IMG_0004.heic"
    write_photo(src, 6, quality=90)
    monkeypatch.setattr(stills, "heif_support", lambda: None)   # pillow-heif that reads but cannot encode
    report = trt_anon.process(src)
    assert report.output == str(tmp_path / "IMG_0004.anon.png")
    assert report.warnings == [".heic written as .png: HEIC needs pillow-heif with its HEVC encoder "
                               "(pip install pillow-heif)"]
    assert Image.open(report.output).format == "PNG" and shown(report.output).shape == (512, 400, 3)
    with pytest.raises(trt_anon.OutputError, match="HEIC needs pillow-heif"):
        trt_anon.process(src, tmp_path / "asked.heic")
    assert not (tmp_path / "asked.heic").exists()


def test_photo_to_a_video_name_is_a_one_line_error(tmp_path):
    src = tmp_path / "photo.jpg"
    write_photo(src, 1, quality=90)
    with pytest.raises(trt_anon.OutputError, match="is a photo"):
        trt_anon.process(src, tmp_path / "photo.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]


def test_damaged_photo_is_a_one_line_error(tmp_path):
    src = tmp_path / "cut.jpg"
    write_photo(src, 6, quality=90)
    src.write_bytes(src.read_bytes()[:5000])
    with pytest.raises(trt_anon.InputError, match="damaged or truncated"):
        trt_anon.process(src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.jpg"]


def test_what_a_photo_cannot_keep_is_one_warning_each(tmp_path):
    """A 16-bit PNG is written with 8 bits; of an animated WebP (as of an MPF JPEG or a HEIC with a depth
    map) only the main picture is written: the others would show the face unredacted."""
    deep = tmp_path / "deep.png"
    write(deep, "png", "rgb48be", alpha=False)
    assert trt_anon.process(deep).warnings == ["16-bit PNG photo written with 8 bits per sample"]
    frames = tmp_path / "two.webp"
    face = Image.fromarray(data.astronaut())
    face.save(frames, save_all=True, append_images=[face.transpose(ORIENT.FLIP_TOP_BOTTOM)], lossless=True)
    report = trt_anon.process(frames)
    assert report.warnings == ["the file holds 2 pictures (previews, depth or gain maps, pages, frames): only the "
                               "main one is anonymized and written"]
    out = Image.open(report.output)
    assert getattr(out, "n_frames", 1) == 1 and cell_deviation(np.asarray(out.convert("RGB")), FACE) < 1.0
