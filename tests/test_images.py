"""Still images keep what they had (issue 14): alpha kept as it was while the colour is mosaicked,
the input's format kept where FFmpeg can write it, one warning where something had to change."""
from __future__ import annotations

import av
import numpy as np
import pytest
from helpers import cell_deviation
from skimage import data

import trt_anon
from trt_anon.synth import FACE


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
    src = tmp_path / "rgba.webp"
    write(src, "libwebp", "bgra", {"lossless": "1"})
    monkeypatch.setattr(av, "codecs_available", av.codecs_available - {"libwebp"})
    report = trt_anon.process(src)
    assert report.output == str(tmp_path / "rgba.anon.png")
    assert report.warnings == [".webp written as .png: this FFmpeg cannot write .webp images"]
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
