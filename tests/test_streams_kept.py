"""What must survive besides the pixels: HDR10 brightness metadata (and which codec carries it), chapters,
every stream's dispositions and language/title/handler tags. Clips with real faces, made here."""
from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import pytest
from helpers import check_redacted
from synth import Face, make_clip

import trt_anon

FACE = [Face(48, (24, 16), (1.5, 0.0))]
# HDR10 as a grading suite writes it: a P3-D65 1000-nit mastering display, MaxCLL 1000, MaxFALL 400 nits.
MASTER = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"
PRIMARIES = (0.68, 0.32, 0.265, 0.69, 0.15, 0.06, 0.3127, 0.329)  # R, G, B, white point (x, y)
LUMINANCE = (0.005, 1000.0)                                     # min, max (cd/m2)
LIGHT = (1000, 400)
HDR10 = (9, 16, 9)  # BT.2020 primaries, PQ (SMPTE ST 2084), BT.2020 non-constant matrix


def hdr10_clip(path: Path, frames: int = 6, codec_tag: str | None = None):
    return make_clip(path, 160, 96, frames=frames, audio=0, codec="libx265", pix_fmt="yuv420p10le", faces=FACE,
                     color=HDR10, codec_tag=codec_tag,
                     options={"x265-params": f"master-display={MASTER}:max-cll={LIGHT[0]},{LIGHT[1]}"})


def side_data(path) -> tuple[tuple | None, tuple | None]:
    """(mastering display: R, G, B, white point x/y then min, max luminance; MaxCLL, MaxFALL) as a decoder
    sees them on the first frame (AVMasteringDisplayMetadata: 10 rationals and 2 flags; two unsigned ints)."""
    mastering = light = None
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        for sd in frame.side_data:
            raw = bytes(sd)
            if sd.type == av.sidedata.sidedata.Type.MASTERING_DISPLAY_METADATA:
                v = struct.unpack("<22i", raw)
                mastering = tuple(round(v[i] / v[i + 1], 4) for i in range(0, 20, 2))
            elif sd.type == av.sidedata.sidedata.Type.CONTENT_LIGHT_LEVEL:
                light = struct.unpack("<2I", raw)
    return mastering, light


def stream_facts(path) -> tuple:
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        name = {"libdav1d": "av1"}.get(cc.name, cc.name)
        return name, cc.pix_fmt, (cc.color_primaries, cc.color_trc, cc.colorspace)


def test_the_hdr10_test_clip_has_the_metadata(tmp_path):
    assert side_data(hdr10_clip(tmp_path / "in.mkv").path) == (PRIMARIES + LUMINANCE, LIGHT)


@pytest.mark.parametrize("ext,codec,expect", [
    (".mkv", None, "hevc"), (".mp4", None, "hevc"), (".mov", None, "hevc"), (".m4v", None, "hevc"),
    (".webm", None, "av1"),
    (".mkv", "hevc", "hevc"), (".mp4", "av1", "av1"), (".mkv", "h264", "h264"),
])
def test_hdr10_metadata_reaches_the_encoder(tmp_path, ext, codec, expect):
    """Mastering display (SMPTE ST 2086) and MaxCLL/MaxFALL are written into the output's bitstream by
    x265, SVT-AV1 or x264, so players tone-map as the grader meant; 10-bit HDR is HEVC Main 10 by default."""
    clip = hdr10_clip(tmp_path / f"in{ {'.webm': '.mkv', '.m4v': '.mp4'}.get(ext, ext)}")
    report = trt_anon.process(clip.path, tmp_path / f"out{ext}", codec=codec)
    mastering, light = side_data(report.output)
    assert mastering is not None and light == LIGHT, (mastering, light)
    assert mastering[:8] == pytest.approx(PRIMARIES, abs=2e-4)  # AV1 stores 16-bit fractions
    assert mastering[8:] == pytest.approx(LUMINANCE, rel=1e-2)
    assert stream_facts(report.output) == (expect, "yuv420p10le", HDR10)
    if codec is None:
        said = [w for w in report.warnings if "10-bit HDR" in w]
        assert len(said) == 1 and ("HEVC Main 10" if expect == "hevc" else "AV1") in said[0], report.warnings
    if ext in (".mp4", ".m4v", ".mov") and expect == "hevc":
        with av.open(report.output) as c:
            assert c.streams.video[0].codec_context.codec_tag == "hvc1"  # what Apple's players need
    check_redacted(clip, clip.path, Path(report.output), max_bg=4.0)


def test_ten_bit_sdr_defaults_to_hevc_main_10_and_says_so(tmp_path):
    """H.264 High 10 plays almost nowhere (browsers, phones): 10-bit input becomes HEVC Main 10."""
    clip = make_clip(tmp_path / "in.mp4", 160, 96, frames=6, audio=0, codec="libx265", pix_fmt="yuv420p10le",
                     faces=FACE)
    report = trt_anon.process(clip.path)
    assert stream_facts(report.output)[:2] == ("hevc", "yuv420p10le")
    assert [w for w in report.warnings if "HEVC Main 10" in w and "10-bit" in w], report.warnings
    assert side_data(report.output) == (None, None)  # none invented
    # asked for by name: written as asked, nothing to say
    report = trt_anon.process(clip.path, tmp_path / "h264.mp4", codec="h264")
    assert stream_facts(report.output)[:2] == ("h264", "yuv420p10le") and not report.warnings


def test_ten_bit_422_is_kept_and_the_profile_said_is_the_one_written(tmp_path):
    """10-bit 4:2:2 (a camera's intermediate) keeps its chroma on the CPU path: HEVC Main 4:2:2 10, and so said."""
    clip = make_clip(tmp_path / "in.mkv", 160, 96, frames=6, audio=0, codec="libx265", pix_fmt="yuv422p10le",
                     faces=FACE)
    report = trt_anon.process(clip.path, tmp_path / "out.mp4", backend="cpu")
    assert stream_facts(report.output)[:2] == ("hevc", "yuv422p10le")
    assert [w for w in report.warnings if "HEVC Main 4:2:2 10" in w], report.warnings


def test_eight_bit_sdr_stays_h264_without_a_word(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", 160, 96, frames=4, audio=0, faces=FACE)
    report = trt_anon.process(clip.path)
    assert stream_facts(report.output)[:2] == ("h264", "yuv420p") and not report.warnings


def test_hdr_metadata_a_codec_cannot_carry_is_said(tmp_path):
    """PyAV's libvpx is 8-bit and writes no HDR metadata: an 8-bit PQ clip into VP9 says what is lost."""
    clip = make_clip(tmp_path / "in.mkv", 160, 96, frames=4, audio=0, faces=FACE, color=HDR10,
                     options={"x264-params": f"mastering-display={MASTER}:cll={LIGHT[0]},{LIGHT[1]}"})
    assert side_data(clip.path)[1] == LIGHT
    report = trt_anon.process(clip.path, tmp_path / "out.webm", codec="vp9")
    assert [w for w in report.warnings if "HDR" in w and "libvpx-vp9" in w and "not written" in w], report.warnings


def test_dolby_vision_layer_dropped_is_said(tmp_path):
    """A Dolby Vision MP4 (sample entry dvh1): the HEVC base layer is anonymized and written with its HDR10
    metadata; the Dolby Vision layer cannot be re-made, and the report says so."""
    clip = hdr10_clip(tmp_path / "dv.mp4", codec_tag="dvh1")
    with av.open(str(clip.path)) as c:
        assert c.streams.video[0].codec_context.codec_tag == "dvh1"
    report = trt_anon.process(clip.path)
    said = [w for w in report.warnings if "Dolby Vision" in w]
    assert len(said) == 1 and "dropped" in said[0], report.warnings
    assert side_data(report.output)[1] == LIGHT
    with av.open(report.output) as c:
        assert c.streams.video[0].codec_context.codec_tag == "hvc1"


# --- chapters, dispositions, tags -------------------------------------------------------------------------

CHAPTERS = [(0.0, 0.8, "Intro"), (0.8, 1.5, "Zweiter Teil – Über")]
D = av.stream.Disposition


def restream(src: Path, dst: Path, tags: dict[int, dict], dispositions: dict[int, int]) -> Path:
    """``src``'s packets copied into ``dst`` with chapters and these per-stream tags and dispositions."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {}
        for s in inp.streams:
            o = out.add_stream_from_template(s)
            o.metadata.update(tags.get(s.index, {}))
            o.disposition = dispositions.get(s.index, 0)
            streams[s.index] = o
        out.set_chapters([{"id": i + 1, "start": round(a * 1000), "end": round(b * 1000),
                           "time_base": Fraction(1, 1000), "metadata": {"title": t}}
                          for i, (a, b, t) in enumerate(CHAPTERS)])
        for p in inp.demux():
            if not p.size or (p.stream.type == "subtitle" and p.size <= 2):  # flushes; MP4's empty subtitle
                continue                                                     # samples (its muxer makes its own)
            p.stream = streams[p.stream.index]
            out.mux(p)
    return dst


def described(path) -> tuple[list, list]:
    """(chapters as (start s, end s, title), per stream (type, disposition, language, title, handler))."""
    with av.open(str(path)) as c:
        chapters = [(round(float(ch["start"] * ch["time_base"]), 3), round(float(ch["end"] * ch["time_base"]), 3),
                     ch["metadata"].get("title")) for ch in c.chapters()]
        streams = []
        for s in c.streams:
            if s.type == "data":  # MP4's chapter track: the chapters above
                continue
            m = {k.lower(): v for k, v in s.metadata.items()}
            streams.append((s.type, int(s.disposition), m.get("language"), m.get("title", m.get("name")),
                            m.get("handler_name")))
        return chapters, streams


@pytest.mark.parametrize("ext", [".mkv", ".mp4", ".mov"])
def test_chapters_dispositions_and_tags_kept(tmp_path, ext):
    """Chapters with their times and titles; per stream: dispositions (the video's ``default`` too), language,
    title and handler name; and no warning about MP4's chapter track, which is how MP4 stores chapters."""
    subtitles = ext != ".mov"
    clip = make_clip(tmp_path / f"plain{ext}", 160, 96, frames=45, fps=30, audio=2, subtitles=subtitles,
                     faces=FACE)
    tags = {0: {"language": "deu", "title": "Kamera 1", "handler_name": "Kamera"},
            1: {"language": "deu", "title": "Originalton", "handler_name": "Ton"},
            2: {"language": "eng", "title": "Commentary", "handler_name": "Director"}}
    dispositions = {0: D.default, 1: D.default | D.original, 2: D.comment}
    if subtitles:
        tags[3] = {"language": "fra", "title": "Sous-titres forcés", "handler_name": "Texte"}
        dispositions[3] = D.forced
    src = restream(clip.path, tmp_path / f"in{ext}", tags, dispositions)
    chapters, streams = described(src)
    assert chapters == [(a, b, t) for a, b, t in CHAPTERS]
    report = trt_anon.process(src)
    assert Path(report.output).suffix == ext
    assert not [w for w in report.warnings if "dropped" in w], report.warnings
    assert described(report.output) == (chapters, streams)


def test_chapters_kept_into_another_container_or_their_loss_said(tmp_path):
    clip = make_clip(tmp_path / "plain.mp4", 160, 96, frames=45, audio=1, faces=FACE)
    src = restream(clip.path, tmp_path / "in.mp4", {0: {"title": "Kamera 1"}}, {0: D.default, 1: D.default})
    report = trt_anon.process(src, tmp_path / "out.mkv")
    assert not report.warnings
    chapters, streams = described(report.output)
    assert chapters == [(a, b, t) for a, b, t in CHAPTERS]
    assert [s[1] for s in streams] == [D.default, D.default] and streams[0][3] == "Kamera 1"
    report = trt_anon.process(src, tmp_path / "out.avi")  # AVI has no chapters
    assert report.warnings == ["2 chapter(s) dropped: AVI cannot hold chapters (.mkv and .mp4 can)"]


def test_dispositions_and_tags_kept_on_audio_converted_for_webm(tmp_path):
    """AAC named into a WebM is converted to Opus: the new streams keep what copied ones would, the dispositions
    WebM holds (the English track's ``default``, the other's ``forced``), language and title: players pick the
    track by them."""
    clip = make_clip(tmp_path / "plain.mkv", 160, 96, frames=30, fps=30, audio=2, faces=FACE)
    tags = {0: {"language": "eng", "title": "Camera"}, 1: {"language": "eng", "title": "English"},
            2: {"language": "fra", "title": "Commentaire"}}
    dispositions = {0: D.default, 1: D.default, 2: D.forced}
    src = restream(clip.path, tmp_path / "in.mkv", tags, dispositions)
    _, streams = described(src)
    report = trt_anon.process(src, tmp_path / "out.webm")
    assert sum("converted" in w for w in report.warnings) == 2, report.warnings
    with av.open(report.output) as c:
        assert [s.codec_context.name for s in c.streams.audio] == ["opus", "opus"]
    _, got = described(report.output)
    assert [s[:4] for s in got] == [s[:4] for s in streams]
    assert [s[1] for s in got] == [D.default, D.default, D.forced]
