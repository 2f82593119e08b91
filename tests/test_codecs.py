"""Every codec x container pair the CLI allows, WebM chosen automatically, mismatches refused before
any work. Tiny clips: what is checked is the container, codec, frames, timing and audio."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest
from helpers import assert_copied, audio_packets, check_redacted, decode_frames, video_times
from synth import Face, make_clip

import trt_anon
from trt_anon import ConfigError, OutputError
from trt_anon.cli import main

FACE = [Face(40, (20, 12), (1.0, 0.0))]
PAIRS = [(c, e) for e in (".mp4", ".mkv") for c in ("h264", "hevc", "vp9", "av1")] + \
        [("h264", ".mov"), ("hevc", ".mov"), ("vp9", ".webm"), ("av1", ".webm")]


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("codecs")
    return {"aac": make_clip(d / "in.mp4", 160, 96, frames=8, faces=FACE).path,
            "opus": make_clip(d / "in.webm", 160, 96, frames=8, faces=FACE).path,
            "silent": make_clip(d / "silent.mp4", 160, 96, frames=8, audio=0, faces=FACE).path}


def video(path) -> tuple[str, str, int, int, str]:
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        name = {"libdav1d": "av1"}.get(cc.name, cc.name)  # the decoder's name
        return c.format.name, name, cc.width, cc.height, cc.pix_fmt


@pytest.mark.parametrize("codec,ext", PAIRS)
def test_codec_container_pairs(src, tmp_path, codec, ext):
    clip = src["opus" if ext == ".webm" else "aac"]
    out = tmp_path / f"out{ext}"
    report = trt_anon.process(clip, out, codec=codec)
    fmt, name, w, h, pix = video(out)
    assert name == codec and (w, h, pix) == (160, 96, "yuv420p")
    assert report.frames == 8 and len(decode_frames(out)) == 8
    src_t, out_t = video_times(clip), video_times(out)
    if ext in (".mkv", ".webm") and ext != clip.suffix:  # Matroska: ms, shifted by the AAC priming
        assert all(abs((b - out_t[0]) - a) <= 0.001 for a, b in zip(src_t, out_t))
    else:
        assert out_t == src_t
    assert_copied(clip, out)


@pytest.mark.parametrize("codec", ["vp9", "av1"])
def test_webm_faces_covered(tmp_path, codec):
    clip = make_clip(tmp_path / "in.webm", 320, 180, frames=12, faces=[Face(70, (40, 40), (3.0, 0.5))])
    out = tmp_path / "out.webm"
    trt_anon.process(clip.path, out, codec=codec)
    check_redacted(clip, clip.path, out, max_bg=4.0)


def test_webm_chosen_for_webm_and_said(src, tmp_path, capsys):
    out = tmp_path / "y.webm"
    assert main([str(src["silent"]), "-o", str(out), "-q"]) == 0
    assert video(out)[:2] == ("matroska,webm", "vp9")
    report = trt_anon.process(src["silent"], tmp_path / "z.webm")
    assert any("vp9" in w for w in report.warnings)
    # a WebM input stays WebM (its audio is Opus), VP9 inside
    report = trt_anon.process(src["opus"])
    assert report.output.endswith(".anon.webm") and video(report.output)[1] == "vp9"
    assert_copied(src["opus"], report.output)


@pytest.mark.parametrize("args,match", [
    (["--codec", "h264", "-o", "{d}/o.webm"], "cannot hold h264"),
    (["--codec", "hevc", "-o", "{d}/o.webm"], "cannot hold hevc"),
    (["--codec", "vp9", "-o", "{d}/o.mov"], "cannot hold vp9"),   # FFmpeg writes VP9/AV1 in MP4, not MOV
    (["--codec", "av1", "-o", "{d}/o.mov"], "cannot hold av1"),
])
def test_mismatch_is_one_line_before_any_work(src, tmp_path, capsys, args, match):
    import re

    argv = [str(src["aac"])] + [a.format(d=tmp_path) for a in args]
    assert main(argv + ["-q"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_odd_size_and_ten_bit(tmp_path):
    odd = make_clip(tmp_path / "odd.mp4", 161, 97, frames=6, audio=0, pix_fmt="yuv444p", faces=FACE).path
    for codec, pix in (("vp9", "yuv444p"), ("av1", "yuv420p")):  # SVT-AV1 is 4:2:0 only
        report = trt_anon.process(odd, tmp_path / f"odd-{codec}.mkv", codec=codec)
        assert video(report.output)[2:] == (161, 97, pix) and len(decode_frames(report.output)) == 6
    deep = make_clip(tmp_path / "deep.mkv", 160, 96, frames=6, audio=0, codec="libx265", pix_fmt="yuv420p10le",
                     faces=FACE).path
    report = trt_anon.process(deep, tmp_path / "deep-av1.mkv", codec="av1")
    assert video(report.output)[1:] == ("av1", 160, 96, "yuv420p10le")
    report = trt_anon.process(deep, tmp_path / "deep.webm")  # VP9 here is 8-bit: WebM gets AV1 instead
    assert video(report.output)[1:] == ("av1", 160, 96, "yuv420p10le")
    with pytest.raises(ConfigError, match="8-bit only"):
        trt_anon.process(deep, tmp_path / "deep-vp9.mkv", codec="vp9")
    assert not (tmp_path / "deep-vp9.mkv").exists()


def test_output_error_is_an_anon_error():
    assert issubclass(OutputError, trt_anon.AnonError)


def audio_span(path, index: int) -> tuple[str, float, float, dict]:
    """(codec, first sample time, seconds of samples, tags) of audio stream ``index``, decoded."""
    with av.open(str(path)) as c:
        s = c.streams[index]
        first, samples = None, 0
        for f in c.decode(s):
            first = float(f.pts * f.time_base) if first is None else first
            samples += f.samples
        return s.codec_context.name, first, samples / s.codec_context.sample_rate, dict(s.metadata)


def test_aac_into_a_named_webm_becomes_opus(src, tmp_path):
    """The user named WebM: AAC is converted to Opus (as ffmpeg does), in time with the video; said once."""
    out = tmp_path / "y.webm"
    assert main([str(src["aac"]), "-o", str(out), "-q"]) == 0
    report = trt_anon.process(src["aac"], out, overwrite=True)
    converted = [w for w in report.warnings if "converted" in w]
    assert converted == ["audio stream #1 converted: aac -> Opus 128 kb/s stereo 48 kHz (WebM cannot hold aac)"]
    assert video(out)[:2] == ("matroska,webm", "vp9") and len(decode_frames(out)) == 8
    src_t, out_t = video_times(src["aac"]), video_times(out)
    assert len(out_t) == len(src_t) and all(abs(a - b) <= 0.001 for a, b in zip(src_t, out_t))  # WebM: ms
    codec, first, seconds, tags = audio_span(out, 1)
    _, src_first, src_seconds, _ = audio_span(src["aac"], 1)
    frame = 1 / 30
    assert codec == "opus" and tags["language"] == "eng"
    assert abs(first - src_first) < frame and abs(seconds - src_seconds) < frame


def two_audio_mkv(d: Path, aac_delay: float) -> tuple[Path, Path]:
    """An MKV with H.264 video, AAC audio starting ``aac_delay`` s late, and Opus audio; and the WebM
    whose Opus packets it holds."""
    mp4 = make_clip(d / "a.mp4", 160, 96, frames=8, faces=FACE).path
    webm = make_clip(d / "b.webm", 160, 96, frames=8, faces=FACE, audio=1).path
    mkv = d / "two.mkv"
    with av.open(str(mp4)) as a, av.open(str(webm)) as b, av.open(str(mkv), "w") as out:
        streams = [(a, a.streams.video[0], 0), (a, a.streams.audio[0], aac_delay), (b, b.streams.audio[0], 0)]
        outs = [out.add_stream_from_template(s) for _, s, _ in streams]
        outs[2].metadata["title"] = "commentary"
        for (c, s, delay), o in zip(streams, outs):
            with av.open(c.name) as again:
                for p in again.demux(again.streams[s.index]):
                    if p.size:
                        shift = round(delay / p.time_base)
                        p.pts, p.dts = p.pts + shift, p.dts + shift
                        p.stream = o
                        out.mux(p)
    return mkv, webm


def test_mkv_aac_converted_opus_copied(tmp_path):
    mkv, webm = two_audio_mkv(tmp_path, aac_delay=0.5)
    out = tmp_path / "out.webm"
    report = trt_anon.process(mkv, out)
    assert [w for w in report.warnings if "converted" in w] == [
        "audio stream #1 converted: aac -> Opus 128 kb/s stereo 48 kHz (WebM cannot hold aac)"]
    assert len(decode_frames(out)) == 8
    codec, first, seconds, _ = audio_span(out, 1)
    _, src_first, src_seconds, _ = audio_span(mkv, 1)
    assert codec == "opus" and 0.45 < src_first <= 0.5  # late (less the AAC priming frame MKV keeps)
    assert abs(first - src_first) < 1 / 30 and abs(seconds - src_seconds) < 1 / 30
    assert audio_span(out, 2)[3]["title"] == "commentary"
    assert audio_packets(out)[1] == audio_packets(webm)[0]  # the Opus stream: copied bit for bit


def test_default_output_never_converts(tmp_path):
    """No -o: the MKV stays MKV and both audio streams are copied as they are."""
    mkv, _ = two_audio_mkv(tmp_path, aac_delay=0.0)
    report = trt_anon.process(mkv)
    assert report.output.endswith(".anon.mkv") and not [w for w in report.warnings if "converted" in w]
    assert_copied(mkv, report.output)


def test_subtitles_into_webm_stay_an_error(tmp_path, capsys):
    clip = make_clip(tmp_path / "in.mp4", 160, 96, frames=4, faces=FACE, subtitles=True).path
    out = tmp_path / "o"
    out.mkdir()
    assert main([str(clip), "-o", str(out / "o.webm"), "-q"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "subtitle stream #2 (mov_text) cannot be stored in .webm" in err, err
    assert list(out.iterdir()) == []


def test_failed_conversion_leaves_nothing(src, tmp_path, monkeypatch):
    """The audio conversion fails mid-file (video and audio up to 0.1 s written, to a temporary file, never
    to the output's name): nothing is left."""
    from trt_anon.media import transcode

    at_failure, feed = [], transcode.AudioTranscoder.feed

    def broken(self, packet):
        if packet is not None and packet.pts * packet.time_base > 0.1:
            at_failure.extend(sorted(p.name for p in tmp_path.iterdir()))
            raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
        return feed(self, packet)

    monkeypatch.setattr(transcode.AudioTranscoder, "feed", broken)
    with pytest.raises(OutputError, match="writing .*y.webm failed"):
        trt_anon.process(src["aac"], tmp_path / "y.webm")
    assert len(at_failure) == 1 and at_failure[0].startswith(".y.") and at_failure[0].endswith(".part.webm"), \
        f"at the failure, mid-file: {at_failure}"
    assert list(tmp_path.iterdir()) == []


def test_no_libopus_keeps_the_one_line_error(src, tmp_path, monkeypatch):
    from trt_anon.media import transcode

    monkeypatch.setitem(transcode.TARGETS, "webm", ("opus", "no-such-encoder"))
    with pytest.raises(OutputError, match=r"audio stream #1 \(aac\) cannot be stored in .webm .*no libopus"):
        trt_anon.process(src["aac"], tmp_path / "y.webm")
    assert list(tmp_path.iterdir()) == []



def test_converted_audio_is_interleaved(tmp_path, monkeypatch):
    """Converted as it is read, as the video is written (as copied packets are: up to the last video packet
    written, so the video encoder's lag, not the file's length, bounds what is held)."""
    from trt_anon.media import Remuxer, transcode

    clip = make_clip(tmp_path / "in.mp4", 160, 96, frames=60, faces=FACE).path
    fed: list[tuple[float | None, float]] = []   # (the advance() it came in, packet time)
    until: list[float | None] = []
    advance, feed = Remuxer.advance, transcode.AudioTranscoder.feed

    def advance_spy(self, t):
        until.append(t)
        return advance(self, t)

    def feed_spy(self, packet):
        if packet is not None:
            fed.append((until[-1], float(packet.pts * packet.time_base)))
        return feed(self, packet)

    monkeypatch.setattr(Remuxer, "advance", advance_spy)
    monkeypatch.setattr(transcode.AudioTranscoder, "feed", feed_spy)
    trt_anon.process(clip, tmp_path / "out.webm")
    written = max(u for u in until if u is not None)  # the last video packet's time before the end
    assert len(fed) > 40 and written > 1.0
    assert all(t <= u for u, t in fed if u is not None)  # never ahead of the video
    assert all(t > written for u, t in fed if u is None)  # nor behind: only what follows the video is left


def test_gap_in_converted_audio_filled_with_silence(tmp_path):
    """An AAC stream whose times jump 0.3 s forward after 0.25 s (a dropout): the Opus stream gets
    0.3 s of silence there, so the sound after it stays where it was (in time with the video)."""
    mp4 = make_clip(tmp_path / "a.mp4", 160, 96, frames=30, faces=FACE).path
    mkv = tmp_path / "gap.mkv"
    with av.open(str(mp4)) as a, av.open(str(mkv), "w") as out:
        outs = {s.index: out.add_stream_from_template(s) for s in (a.streams.video[0], a.streams.audio[0])}
        for p in a.demux():
            if p.size:
                if p.stream.type == "audio" and p.pts * p.time_base > 0.25:
                    shift = round(Fraction(3, 10) / p.time_base)
                    p.pts, p.dts = p.pts + shift, p.dts + shift
                p.stream = outs[p.stream.index]
                out.mux(p)
    out = tmp_path / "out.webm"
    report = trt_anon.process(mkv, out)
    filled = [w for w in report.warnings if "silence filled" in w]
    assert len(filled) == 1 and "0.3" in filled[0], report.warnings
    with av.open(str(mkv)) as c:
        *_, last = c.decode(c.streams.audio[0])
        src_end = float(last.pts * last.time_base) + last.samples / last.sample_rate
    codec, first, seconds, _ = audio_span(out, 1)
    assert codec == "opus" and abs(first + seconds - src_end) < 1 / 30  # the end is where it was


def test_codec_table_answers_for_every_codec():
    """Each codec's facts come from its one entry: default crf in range, options for every preset, its
    encoders found by name, the crf range enforced, and NVENC kept from reordering where its software
    encoder is."""
    from trt_anon.encode.codecs import CODECS, PRESETS, by_encoder, check_crf, codec_options, no_reorder
    assert tuple(CODECS) == trt_anon.config.CODECS
    for name, codec in CODECS.items():
        assert 0 <= codec.crf <= codec.crf_max
        for preset in PRESETS:
            assert codec_options(codec.encoder, codec.crf, preset)["crf"] == str(codec.crf)
        assert all(by_encoder(e) is codec for e in codec.encoders())
        check_crf(name, codec.crf_max)
        with pytest.raises(ConfigError, match=f"between 0 and {codec.crf_max} for {name}"):
            check_crf(name, codec.crf_max + 1)
        if codec.nvenc:
            assert codec_options(codec.nvenc, 20, "fast") == {}   # NVENC's options are set by its encoder
            assert (no_reorder(codec.nvenc) is None) == (codec.no_reorder is None)
    assert by_encoder("mpeg4") is None and no_reorder("mpeg4") is None
