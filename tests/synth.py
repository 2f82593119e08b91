"""Test clips with real faces and per-frame ground truth, made on the fly.

Used by the tests, ``scripts/bench.py``, ``scripts/eval.py`` and the demo clip. Faces come from
photos that packages ship: Eileen Collins' portrait in scikit-image (``astronaut``, NASA, public
domain), the 100 LFW face crops in scikit-image (``lfw:N``, 25x25 grey), and Grace Hopper's
portrait in matplotlib's sample data (``hopper``, public domain; needs matplotlib). The
background is ``skimage.data.coffee()``. Needs scikit-image (the ``[test]`` extra).

Test code, not in the wheel: tests import it as ``synth`` (tests/ is on the path, as for ``helpers``);
the scripts put tests/ on ``sys.path`` themselves.
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
# Eye centres (left, right) and mouth corners in each source, in that source's pixels: CenterFace's
# landmarks on the full photo (FP32), checked against the faces; LFW crops: typical positions.
LANDMARKS = {
    "astronaut": ((203, 102), (247, 105), (203, 142), (241, 144)),
    "hopper": ((221, 200), (304, 192), (236, 280), (304, 273)),
    "lfw": ((7.5, 9.0), (16.0, 9.0), (8.0, 18.0), (15.0, 18.0)),
}


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
    oval: bool = False                  # paste only an oval around the face (head), not the rectangle


# A face counts (must be covered) when at least this share of it is in view: in the frame and not under
# a face drawn over it. A face 30% hidden is identifiable, one 70% hidden is not; the frame border is
# counted the same way.
MIN_IN_VIEW = 0.4


@dataclass
class Clip:
    path: Path
    boxes: list[list[tuple[float, float, float, float]]] = field(default_factory=list)  # per frame
    faces: list[Face] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)      # width, height as displayed
    rotation: int = 0

    def in_view(self, i: int) -> list[tuple[np.ndarray, float]]:
        """For each of frame ``i``'s ``boxes``: (mask of its pixels in view, share of the face in view),
        in stored coordinates like the boxes (see ``in_view``)."""
        k = (self.rotation // 90) % 4
        out = in_view(self.faces, i, *self.size)
        return [(np.ascontiguousarray(np.rot90(m, -k)), share) for m, share in out] if k else out


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
            img, _, (px0, py0, px1, py1) = face_source(f.source)
            patch = img[py0:py1, px0:px1]
            s, x, y, fw, fh, (pw, ph), (x0, y0), m = _place(f, i - f.enter)
            p = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            if f.flip:
                p = p[:, ::-1]
            if f.gain != 1.0:
                p = np.clip(p.astype(np.float32) * f.gain, 0, 255).astype(np.uint8)
            if m is not None:
                p = cv2.warpAffine(p, m, (pw, ph), borderMode=cv2.BORDER_REPLICATE)
            sx0, sy0 = max(0, -x0), max(0, -y0)
            dx0, dy0 = max(0, x0), max(0, y0)
            w = min(pw - sx0, width - dx0)
            h = min(ph - sy0, height - dy0)
            if w <= 0 or h <= 0:
                continue
            if f.oval:  # a head without its rectangle: faces drawn over it hide only what a head would
                keep = _oval(f, i - f.enter)[sy0:sy0 + h, sx0:sx0 + w, None]
                frame[dy0:dy0 + h, dx0:dx0 + w] = np.where(keep, p[sy0:sy0 + h, sx0:sx0 + w],
                                                           frame[dy0:dy0 + h, dx0:dx0 + w])
            else:
                frame[dy0:dy0 + h, dx0:dx0 + w] = p[sy0:sy0 + h, sx0:sx0 + w]
            box = (max(0.0, x), max(0.0, y), min(float(width), x + fw), min(float(height), y + fh))
            if box[2] - box[0] >= 2 and box[3] - box[1] >= 2 and not f.source.startswith("nonface:"):
                gt.append(box)
                sizes.append((fw, fh))
        yield frame, gt, sizes


def _place(f: Face, t: int):
    """Where face ``f`` is drawn ``t`` frames after it entered: (scale, face box x, y, w, h,
    patch size, patch origin in the frame, rotation matrix in patch pixels or None)."""
    _, (fx0, fy0, fx1, fy1), (px0, py0, px1, py1) = face_source(f.source)
    s = max(f.size + f.grow * t, 2.0) / (fx1 - fx0)
    x = f.start[0] + f.velocity[0] * t
    y = f.start[1] + f.velocity[1] * t
    pw, ph = max(1, round((px1 - px0) * s)), max(1, round((py1 - py0) * s))
    fw, fh = (fx1 - fx0) * s, (fy1 - fy0) * s
    left = ((px1 - fx1) if f.flip else (fx0 - px0)) * s  # face box's left edge inside the patch
    origin = (int(round(x - left)), int(round(y - (fy0 - py0) * s)))
    m = cv2.getRotationMatrix2D((left + fw / 2, (fy0 - py0) * s + fh / 2), f.angle, 1.0) if f.angle else None
    return s, x, y, fw, fh, (pw, ph), origin, m


def _oval(f: Face, t: int) -> np.ndarray:
    """Patch-sized mask of the oval pasted for ``Face(oval=True)``: the face box grown by 30% of its
    width each side, 35% of its height above (hair) and 15% below, inside the patch."""
    _, _, _, fw, fh, (pw, ph), (x0, y0), _ = _place(f, t)
    _, x, y, _, _, _, _, _ = _place(f, t)
    left, top = x - x0, y - y0
    x1, x2 = max(0.0, left - 0.3 * fw), min(float(pw), left + 1.3 * fw)
    y1, y2 = max(0.0, top - 0.35 * fh), min(float(ph), top + 1.15 * fh)
    yy, xx = np.mgrid[0:ph, 0:pw] + 0.5
    return ((xx - (x1 + x2) / 2) / ((x2 - x1) / 2)) ** 2 + ((yy - (y1 + y2) / 2) / ((y2 - y1) / 2)) ** 2 <= 1


def cover_mask(f: Face, i: int, width: int, height: int) -> np.ndarray:
    """The pixels face ``f`` paints in frame ``i`` (its patch, or its oval), as an H x W mask."""
    mask = np.zeros((height, width), bool)
    box = patch_box(f, i)
    if box is None:
        return mask
    x0, y0, x1, y1 = box
    shape = _oval(f, i - f.enter) if f.oval else np.ones((y1 - y0, x1 - x0), bool)
    sx, sy = max(0, -x0), max(0, -y0)
    ex, ey = min(x1, width) - x0, min(y1, height) - y0
    if ex > sx and ey > sy:
        mask[y0 + sy:y0 + ey, x0 + sx:x0 + ex] = shape[sy:ey, sx:ex]
    return mask


def in_view(faces: list[Face], i: int, width: int, height: int) -> list[tuple[np.ndarray, float]]:
    """For each ground-truth box ``render`` yields for frame ``i`` (same order): a mask over the box
    (rounded to whole pixels, as the checks read it) of the face's pixels in view, i.e. not under a
    face drawn after it (its rectangle or its oval), and the share of the whole face in view."""
    out = []
    for k, f in enumerate(faces):
        full = face_box(f, i)
        if full is None or f.source.startswith("nonface:") or not _drawn(f, i, width, height):
            continue
        box = (max(0.0, full[0]), max(0.0, full[1]), min(float(width), full[2]), min(float(height), full[3]))
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        mask = np.ones((y2 - y1, x2 - x1), bool)
        for g in faces[k + 1:]:
            if patch_box(g, i) is not None and _drawn(g, i, width, height):
                mask &= ~cover_mask(g, i, width, height)[y1:y2, x1:x2]
        out.append((mask, float(mask.sum()) / max((full[2] - full[0]) * (full[3] - full[1]), 1e-6)))
    return out


def hide(a: Face, b: Face, hidden: float, width: int, height: int) -> Face:
    """``b`` moved along x so that, drawn over ``a``, it hides ``hidden`` of face ``a`` in ``a``'s first frame,
    coming from the side it starts on (``in_view`` by bisection)."""
    from dataclasses import replace
    ax = a.start[0] + a.size / 2
    left = b.start[0] < ax
    lo, hi = (ax - 4 * b.size, ax) if left else (ax, ax + 4 * b.size)  # lo: less hidden from the left
    t = a.enter
    for _ in range(30):
        mid = (lo + hi) / 2
        moved = replace(b, start=(mid - b.velocity[0] * (t - b.enter), b.start[1]))
        share = 1 - in_view([a, moved], t, width, height)[0][1]
        if (share < hidden) == left:
            lo = mid
        else:
            hi = mid
    return replace(b, start=((lo + hi) / 2 - b.velocity[0] * (t - b.enter), b.start[1]))


def _drawn(f: Face, i: int, width: int, height: int) -> bool:
    """Whether ``render`` paints face ``f`` in frame ``i`` (its patch reaches into the frame)."""
    x0, y0, x1, y1 = patch_box(f, i)
    return min(x1, width) > max(x0, 0) and min(y1, height) > max(y0, 0)


def patch_box(f: Face, i: int) -> tuple[int, int, int, int] | None:
    """The rectangle face ``f``'s patch (head and shoulders) covers in frame ``i`` (unclipped), or None."""
    if i < f.enter or (f.leave is not None and i >= f.leave):
        return None
    _, _, _, _, _, (pw, ph), (x0, y0), _ = _place(f, i - f.enter)
    return x0, y0, x0 + pw, y0 + ph


def face_box(f: Face, i: int) -> tuple[float, float, float, float] | None:
    """Face ``f``'s box in frame ``i``, unclipped (render() yields it clipped), or None when absent."""
    if i < f.enter or (f.leave is not None and i >= f.leave):
        return None
    _, x, y, fw, fh, _, _, _ = _place(f, i - f.enter)
    return x, y, x + fw, y + fh


def face_points(f: Face, i: int) -> np.ndarray | None:
    """Left eye, right eye, left and right mouth corner of face ``f`` in frame ``i`` (4, 2), or None.

    The same transform as the pixels (scale, mirror, tilt), so eyes-only redaction can be scored."""
    if i < f.enter or (f.leave is not None and i >= f.leave):
        return None
    _, _, (px0, py0, px1, py1) = face_source(f.source)
    s, _, _, _, _, (pw, ph), (x0, y0), m = _place(f, i - f.enter)
    pts = (np.array(LANDMARKS[f.source.split(":")[0]], np.float64) - (px0, py0)) * s
    if f.flip:  # mirrored: the viewer's left eye is the source's right one
        pts = np.stack([pw - pts[:, 0], pts[:, 1]], axis=1)[[1, 0, 3, 2]]
    if m is not None:
        pts = np.c_[pts, np.ones(len(pts))] @ m.T
    return (pts + (x0, y0)).astype(np.float32)


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
              metadata: dict | None = None, keyint: int | None = None, options: dict | None = None,
              color: tuple[int, int, int] | None = None, codec_tag: str | None = None) -> Clip:
    """Write a clip with moving real faces (and ``audio`` AAC tones); return its per-frame ground truth.

    ``width`` x ``height`` is the picture as displayed. With ``rotation`` (display matrix angle,
    counter-clockwise) the frames are stored turned by -rotation, as phones do, and the
    ground truth is given in stored coordinates. ``vfr`` alternates frame durations (1.5, 0.75, 0.75
    frame periods). The codecs follow the container (VP9/Opus in WebM, MPEG-4/MP3 in AVI).
    ``keyint`` (x264/x265): a keyframe exactly every ``keyint`` frames (no scene-cut keyframes), for segment tests.
    ``options`` are added to the video encoder's (e.g. x265's HDR10 ``master-display``), ``color`` tags the
    video (primaries, transfer, matrix: (9, 16, 9) is HDR10's BT.2020 + PQ) and ``codec_tag`` names its sample
    entry (e.g. ``dvh1``, as Dolby Vision MP4s do).
    """
    path = Path(path)
    k = (rotation // 90) % 4
    vcodec, acodec = DEFAULT_CODECS.get(path.suffix.lower(), ("libx264", "aac"))
    vcodec = codec or vcodec
    if faces is None:
        faces = [Face(size=width / 8, start=(width * 0.1, height * 0.2), velocity=(width / 200, 0))]
    clip = Clip(path, faces=list(faces), size=(width, height), rotation=rotation)
    with av.open(str(path), "w") as out:
        out.metadata.update(metadata or {})
        opts = {"crf": str(crf)} if vcodec in ("libx264", "libx265") else {}
        if vcodec == "libvpx-vp9":
            opts = {"crf": "24", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        if vcodec == "libx265":
            opts["x265-params"] = "log-level=error"
        if keyint and vcodec in ("libx264", "libx265"):
            opts.update(g=str(keyint), keyint_min=str(keyint), sc_threshold="0")
        if vcodec == "mpeg4":
            opts = {"qscale": "3"}
        for key, value in (options or {}).items():  # x265-params are joined to the log level, not replacing it
            opts[key] = f"{opts[key]}:{value}" if key.endswith("-params") and key in opts else value
        vs = out.add_stream(vcodec, rate=fps, options=opts)
        vs.width, vs.height = (height, width) if k % 2 else (width, height)
        vs.pix_fmt = pix_fmt
        tb = Fraction(1, 90000) if vfr else Fraction(1, fps)
        vs.time_base = vs.codec_context.time_base = tb
        if rotation:
            vs.set_display_rotation(rotation)
        if color:
            cc = vs.codec_context
            cc.color_primaries, cc.color_trc, cc.colorspace = color
        if codec_tag:
            vs.codec_context.codec_tag = codec_tag
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


DIVX_USER_DATA = b"DivX503b1393p"  # what DivX 5 wrote; the trailing 'p' says "packed B-frames"


def _vop_type(data: bytes) -> str:
    """'I', 'P', 'B' or 'S' of the first MPEG-4 VOP in ``data``."""
    at = data.find(b"\x00\x00\x01\xb6")
    return "IPBS"[data[at + 4] >> 6] if at >= 0 and at + 4 < len(data) else "?"


def _n_vop(time_increment_bits: int) -> bytes:
    """A not-coded P-VOP (the placeholder DivX/Xvid wrote after a packed B-frame)."""
    bits = "01" + "0" + "1" + "0" * time_increment_bits + "1" + "0"   # type P, time, vop_coded = 0
    bits += "0" + "1" * ((7 - len(bits)) % 8)                           # next_start_code() stuffing
    return b"\x00\x00\x01\xb6" + int(bits, 2).to_bytes(len(bits) // 8, "big")


def pack_b_frames(packets: list[bytes], time_increment_bits: int) -> list[bytes]:
    """Decode-order MPEG-4 packets -> DivX 'packed B-frames': a reference frame and the first B-frame
    after it share one packet, the later B-frames move up one packet and an N-VOP fills the gap, so
    there is still one packet per frame time (AVI has no other timestamps)."""
    out: list[bytes] = []
    i = 0
    while i < len(packets):
        j = i + 1
        while j < len(packets) and _vop_type(packets[j]) == "B":
            j += 1
        if j == i + 1:                # a reference frame with no B-frame after it
            out.append(packets[i])
        else:                         # [R, B1, .., Bk] -> [R+B1, B2, .., Bk, N-VOP]
            out.append(packets[i] + packets[i + 1])
            out.extend(packets[i + 2:j])
            out.append(_n_vop(time_increment_bits))
        i = j
    return out


def make_old_avi(path: str | Path, width: int = 320, height: int = 192, frames: int = 30, fps: int = 25,
                 faces: list[Face] | None = None, b_frames: int = 1, audio_head: int = 729,
                 audio_tail: int = 300) -> Clip:
    """An AVI as DivX 5 / Xvid wrote them: MPEG-4 Part 2 with packed B-frames (DivX user data
    ending in 'p') and AC3 audio whose first and last packets are partial frames (``audio_head``
    and ``audio_tail`` bytes), as in a file cut out of a longer recording."""
    path = Path(path)
    if faces is None:
        faces = [Face(size=width / 5, start=(width * 0.1, height * 0.2), velocity=(width / 100, 0))]
    enc = av.CodecContext.create("mpeg4", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, fps), Fraction(fps)
    enc.max_b_frames, enc.gop_size = b_frames, 12
    enc.options = {"qscale": "3"}
    clip = Clip(path, faces=list(faces), size=(width, height))
    packets: list[bytes] = []
    for i, (frame, gt, _) in enumerate(render(width, height, faces, frames)):
        clip.boxes.append(gt)
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
        vf.pts = i
        packets += [bytes(p) for p in enc.encode(vf)]
    packets += [bytes(p) for p in enc.encode(None)]
    lavc = packets[0][packets[0].find(b"\x00\x00\x01\xb2") + 4:].split(b"\x00\x00\x01")[0]
    packets = [p.replace(lavc, DIVX_USER_DATA.ljust(len(lavc), b"\x00")[:len(lavc)]) if lavc else p
               for p in packets]
    packed = pack_b_frames(packets, max(1, (fps - 1).bit_length()))
    assert len(packed) == frames

    ac3 = av.CodecContext.create("ac3", "w")
    ac3.sample_rate, ac3.layout, ac3.format = 48000, "stereo", "fltp"
    encoded: list[bytes] = []
    for s0 in range(0, int(frames / fps * 48000) + 3 * 1536, 1536):
        t = np.arange(s0, s0 + 1536) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        af.sample_rate, af.pts = 48000, s0
        encoded += [bytes(p) for p in ac3.encode(af)]
    encoded += [bytes(p) for p in ac3.encode(None)]
    stream, size = b"".join(encoded), len(encoded[0])  # CBR: every AC3 frame has the same size
    body = stream[size - audio_head:len(stream) - size + audio_tail]
    chunks = [body[:audio_head]] + [body[k:k + size] for k in range(audio_head, len(body), size)]

    with av.open(str(path), "w", format="avi") as out:
        vs = out.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.time_base = Fraction(1, fps)
        a = out.add_stream("ac3", rate=48000)
        a.layout = "stereo"
        a.bit_rate = ac3.bit_rate
        a.time_base = Fraction(1, 48000)
        audio = iter(enumerate(chunks))
        for i, data in enumerate(packed):
            p = av.Packet(data)
            p.stream, p.time_base, p.pts, p.dts = vs, Fraction(1, fps), i, i
            if _vop_type(data) == "I":
                p.is_keyframe = True
            out.mux(p)
            for k, chunk in audio:     # interleaved: one audio chunk per video frame, roughly
                q = av.Packet(chunk)
                q.stream, q.time_base = a, Fraction(1, 48000)
                q.pts = q.dts = max(0, k * 1536 - 1536 * audio_head // size)
                out.mux(q)
                if (k + 1) * 1536 / 48000 > (i + 1) / fps:
                    break
        for k, chunk in audio:
            q = av.Packet(chunk)
            q.stream, q.time_base = a, Fraction(1, 48000)
            q.pts = q.dts = k * 1536
            out.mux(q)
    return clip
