"""Every codec x container pair the CLI allows, WebM chosen automatically, mismatches refused before
any work (issue 14). Tiny clips: what is checked is the container, codec, frames, timing and audio."""
from __future__ import annotations

from pathlib import Path

import av
import pytest
from helpers import audio_packets, check_redacted, decode_frames, video_times
from test_kernels_on_cpu import cupy_on_cpu, torch_on_cpu  # noqa: F401  (fixtures: the CPU stands in for CUDA)

import trt_anon
from trt_anon import ConfigError, OutputError
from trt_anon.cli import main
from trt_anon.synth import Face, make_clip

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
    assert audio_packets(out) == audio_packets(clip)


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
    assert audio_packets(report.output) == audio_packets(src["opus"])


@pytest.mark.parametrize("args,match", [
    (["--codec", "h264", "-o", "{d}/o.webm"], "cannot hold h264"),
    (["--codec", "hevc", "-o", "{d}/o.webm"], "cannot hold hevc"),
    (["-o", "{d}/o.webm"], "aac.*cannot be stored in .webm"),   # WebM holds Opus/Vorbis audio only
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


@pytest.mark.parametrize("codec", ["vp9", "av1"])
def test_gpu_path_writes_vp9_and_av1_in_software_from_gpu_yuv(torch_on_cpu, monkeypatch, tmp_path, codec):  # noqa: F811
    """No NVENC for VP9 (nor AV1 on this machine): libvpx-vp9 / SVT-AV1 fed YUV made by the GPU kernel,
    rehearsed with the CPU standing in for CUDA (PyAV decode uploaded, as where DALI is missing)."""
    from trt_anon import cuda, stages
    from trt_anon.errors import BackendError

    def no_gpu_decoder(*args):
        raise BackendError("no GPU decoder in this rehearsal")

    monkeypatch.setattr(cuda, "available", lambda: True)
    monkeypatch.setattr(stages, "select_gpu_decoder", no_gpu_decoder)
    clip = make_clip(tmp_path / "in.webm", 160, 96, frames=10, faces=[Face(50, (30, 20), (2.0, 0.5))])
    report = trt_anon.process(clip.path, tmp_path / "out.webm", codec=codec)
    assert report.backends["encode"] == f"{trt_anon.encode.SOFTWARE_CODECS[codec]} (gpu yuv)"
    assert report.backends["redact"] == "cupy"
    assert video(tmp_path / "out.webm")[1:] == (codec, 160, 96, "yuv420p")
    check_redacted(clip, clip.path, tmp_path / "out.webm", max_bg=4.0)
