"""Test clips with real faces and per-frame ground truth, made on the fly.

Used by the tests, ``scripts/bench.py``, ``scripts/eval.py`` and the demo clip. Faces come from
photos that packages ship: Eileen Collins' portrait in scikit-image (``astronaut``, NASA, public
domain), the 100 LFW face crops in scikit-image (``lfw:N``, 25x25 grey), and Grace Hopper's
portrait in matplotlib's sample data (``hopper``, public domain; needs matplotlib). The
background is ``skimage.data.coffee()``. Needs scikit-image (the ``[test]`` extra).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

# In astronaut(): the face (forehead to chin, ear to ear) and the head-and-shoulders patch pasted.
FACE = (178, 55, 272, 182)
PATCH = (125, 0, 330, 240)
HOPPER_FACE, HOPPER_PATCH = (172, 128, 362, 338), (110, 20, 420, 420)


@functools.lru_cache(maxsize=None)
def face_source(name: str) -> tuple[np.ndarray, tuple, tuple]:
    """(image RGB uint8, face box, patch box) for a face source name."""
    from skimage import data
    if name == "astronaut":
        return data.astronaut(), FACE, PATCH
    if name == "hopper":
        import matplotlib.cbook as cbook
        from PIL import Image
        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            return np.asarray(im.convert("RGB")), HOPPER_FACE, HOPPER_PATCH
    if name.startswith(("lfw:", "nonface:")):
        crops = data.lfw_subset()  # the first 100 are faces, the other 100 are not
        k = int(name.split(":")[1]) % 100 + (100 if name.startswith("nonface:") else 0)
        g = (crops[k] * 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2), (1, 0, 24, 25), (0, 0, 25, 25)
    raise ValueError(f"unknown face source {name!r}")


@dataclass
class Face:
    """One face moving in a straight line: ``size`` is the face box width in pixels."""

    size: float
    start: tuple[float, float]          # face box top-left at frame ``enter``
    velocity: tuple[float, float] = (0.0, 0.0)
    enter: int = 0
    leave: int | None = None            # first frame it is gone (None: stays)
    angle: float = 0.0                  # in-plane rotation, degrees
    gain: float = 1.0                   # brightness factor (lighting changes)
    flip: bool = False
    source: str = "astronaut"           # astronaut, hopper, lfw:0 .. lfw:99 (nonface:N: not a face)
    grow: float = 0.0                   # size change per frame, pixels (approaching / receding)


@dataclass
class Clip:
    path: Path
    boxes: list[list[tuple[float, float, float, float]]] = field(default_factory=list)  # per frame


def render(width: int, height: int, faces: list[Face], n: int, coffee=None):
    """Yield (frame RGB uint8, ground-truth face boxes, their unclipped (w, h)) for ``n`` frames.

    Boxes are clipped to the frame; the sizes say how large each face is, border or not."""
    from skimage import data
    bg = cv2.resize(data.coffee() if coffee is None else coffee, (width, height), interpolation=cv2.INTER_AREA)
    for i in range(n):
        # slow drift of the background, so 'unchanged' is tested on a moving picture too
        frame = np.roll(bg, i // 2, axis=1)
        gt, sizes = [], []
        for f in faces:
            if i < f.enter or (f.leave is not None and i >= f.leave):
                continue
            img, (fx0, fy0, fx1, fy1), (px0, py0, px1, py1) = face_source(f.source)
            patch = img[py0:py1, px0:px1]
            t = i - f.enter
            s = max(f.size + f.grow * t, 2.0) / (fx1 - fx0)
            x = f.start[0] + f.velocity[0] * t
            y = f.start[1] + f.velocity[1] * t
            pw, ph = max(1, round(patch.shape[1] * s)), max(1, round(patch.shape[0] * s))
            p = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            if f.flip:
                p = p[:, ::-1]
            if f.gain != 1.0:
                p = np.clip(p.astype(np.float32) * f.gain, 0, 255).astype(np.uint8)
            fw, fh = (fx1 - fx0) * s, (fy1 - fy0) * s
            ox, oy = x - ((px1 - fx1) if f.flip else (fx0 - px0)) * s, y - (fy0 - py0) * s  # patch origin
            if f.angle:
                cx = ((px1 - fx1) if f.flip else (fx0 - px0)) * s + fw / 2
                m = cv2.getRotationMatrix2D((cx, (fy0 - py0) * s + fh / 2), f.angle, 1.0)
                p = cv2.warpAffine(p, m, (pw, ph), borderMode=cv2.BORDER_REPLICATE)
            x0, y0 = int(round(ox)), int(round(oy))
            sx0, sy0 = max(0, -x0), max(0, -y0)
            dx0, dy0 = max(0, x0), max(0, y0)
            w = min(pw - sx0, width - dx0)
            h = min(ph - sy0, height - dy0)
            if w <= 0 or h <= 0:
                continue
            frame[dy0:dy0 + h, dx0:dx0 + w] = p[sy0:sy0 + h, sx0:sx0 + w]
            box = (max(0.0, x), max(0.0, y), min(float(width), x + fw), min(float(height), y + fh))
            if box[2] - box[0] >= 2 and box[3] - box[1] >= 2 and not f.source.startswith("nonface:"):
                gt.append(box)
                sizes.append((fw, fh))
        yield frame, gt, sizes


def rotate_box(box, k: int, width: int, height: int):
    """Box (x1, y1, x2, y2) in an image W x H -> the same box in np.rot90(image, k)."""
    x1, y1, x2, y2 = box
    k %= 4
    if k == 0:
        return box
    if k == 1:
        pts = [(y1, width - x1), (y2, width - x2)]
    elif k == 2:
        pts = [(width - x1, height - y1), (width - x2, height - y2)]
    else:
        pts = [(height - y1, x1), (height - y2, x2)]
    (a, b), (c, d) = pts
    return (min(a, c), min(b, d), max(a, c), max(b, d))


DEFAULT_CODECS = {".webm": ("libvpx-vp9", "libopus"), ".avi": ("mpeg4", "libmp3lame")}


def make_clip(path: str | Path, width: int = 640, height: int = 360, frames: int = 70, fps: int = 30,
              faces: list[Face] | None = None, audio: int = 1, codec: str | None = None, crf: int = 16,
              rotation: int = 0, pix_fmt: str = "yuv420p", vfr: bool = False, subtitles: bool = False,
              metadata: dict | None = None, keyint: int | None = None) -> Clip:
    """Write a clip with moving real faces (and ``audio`` AAC tones); return its per-frame ground truth.

    ``width`` x ``height`` is the picture as displayed. With ``rotation`` (display matrix angle,
    counter-clockwise) the frames are stored turned by -rotation, as phones do, and the
    ground truth is given in stored coordinates. ``vfr`` alternates frame durations (1.5, 0.75, 0.75
    frame periods). The codecs follow the container (VP9/Opus in WebM, MPEG-4/MP3 in AVI).
    ``keyint`` (x264/x265): a keyframe exactly every ``keyint`` frames (no scene-cut keyframes), for segment tests.
    """
    path = Path(path)
    k = (rotation // 90) % 4
    vcodec, acodec = DEFAULT_CODECS.get(path.suffix.lower(), ("libx264", "aac"))
    vcodec = codec or vcodec
    if faces is None:
        faces = [Face(size=width / 8, start=(width * 0.1, height * 0.2), velocity=(width / 200, 0))]
    clip = Clip(path)
    with av.open(str(path), "w") as out:
        out.metadata.update(metadata or {})
        options = {"crf": str(crf)} if vcodec in ("libx264", "libx265") else {}
        if vcodec == "libvpx-vp9":
            options = {"crf": "24", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        if vcodec == "libx265":
            options["x265-params"] = "log-level=error"
        if keyint and vcodec in ("libx264", "libx265"):
            options.update(g=str(keyint), keyint_min=str(keyint), sc_threshold="0")
        if vcodec == "mpeg4":
            options = {"qscale": "3"}
        vs = out.add_stream(vcodec, rate=fps, options=options)
        vs.width, vs.height = (height, width) if k % 2 else (width, height)
        vs.pix_fmt = pix_fmt
        tb = Fraction(1, 90000) if vfr else Fraction(1, fps)
        vs.time_base = vs.codec_context.time_base = tb
        if rotation:
            vs.set_display_rotation(rotation)
        tones = []
        for j in range(int(audio)):
            a = out.add_stream(acodec, rate=48000)
            a.layout = "stereo"
            a.metadata["language"] = ["eng", "fra", "deu"][j % 3]
            tones.append(a)
        subs = None
        sub_codec = "mov_text" if path.suffix.lower() in (".mp4", ".mov", ".m4v") else "subrip"
        if subtitles:
            subs = out.add_mux_stream(sub_codec)
            subs.time_base = Fraction(1, 1000)
        pts = 0
        for i, (frame, gt, _) in enumerate(render(width, height, faces, frames)):
            if k:  # stored = rot90(display, -k), so that players show rot90(stored, k)
                frame = np.ascontiguousarray(np.rot90(frame, -k))
                gt = [rotate_box(b, -k, width, height) for b in gt]
            clip.boxes.append(gt)
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=pix_fmt)
            vf.pts, vf.time_base = pts, tb
            pts += (int(90000 / fps * (1.5 if i % 3 == 0 else 0.75)) if vfr else 1)
            out.mux(vs.encode(vf))
            if subs is not None and i % fps == 0:
                text = f"line {i // fps}".encode()
                body = len(text).to_bytes(2, "big") + text if sub_codec == "mov_text" else text
                p = av.Packet(body)
                p.stream, p.time_base = subs, Fraction(1, 1000)
                p.pts = p.dts = int(i / fps * 1000)
                p.duration = 800
                out.mux(p)
        out.mux(vs.encode(None))
        for j, a in enumerate(tones):
            sr, n = 48000, 960 if acodec == "libopus" else 1152 if acodec == "libmp3lame" else 1024
            total = int(frames / fps * sr)
            fmt = a.codec_context.format.name if a.codec_context.format else "fltp"
            for s0 in range(0, total, n):  # made chunk by chunk: an hour of tone is 700 MB at once
                t = np.arange(s0, s0 + n) / sr
                tone = (0.2 * np.sin(2 * np.pi * (440 + 110 * j) * t)).astype(np.float32)
                tone[max(0, total - s0):] = 0.0
                chunk = np.stack([tone, tone])
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="stereo")
                af.sample_rate, af.pts = sr, s0
                if fmt != "fltp":
                    af = av.AudioResampler(format=fmt, layout="stereo", rate=sr).resample(af)[0]
                    af.pts = s0
                out.mux(a.encode(af))
            out.mux(a.encode(None))
    return clip
