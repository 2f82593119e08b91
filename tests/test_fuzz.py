"""A short, deterministic fuzz campaign (scripts/fuzz.py) through the real CLI.

Every seed clip (MP4 H.264+AAC, MKV HEVC+AAC, WebM VP9+Opus, AVI MPEG-4+MP3, DivX-style AVI)
meets every mutator once: each damaged file must give a leak-free output or a one-line error
with nothing left behind. The long campaign is ``python scripts/fuzz.py`` (docs/robustness.md).
"""
from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz", ROOT / "scripts" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def seeds(fuzz, tmp_path_factory):
    return fuzz.make_seeds(tmp_path_factory.mktemp("seeds"), ["mp4", "avi"])


def test_short_campaign_has_no_failure(fuzz):
    outcomes = fuzz.campaign(cases=50, jobs=2, master=15, timeout=60)
    print(fuzz.summary(outcomes))
    failures = [f"{o.case}: {o.detail}" for o in outcomes if o.verdict == "failure"]
    assert not failures, "\n".join(failures)
    assert {o.seed for o in outcomes} == {"mp4", "mkv", "webm", "avi", "divx"}
    assert {o.mutator for o in outcomes} >= {"flip", "cut", "header", "mp4_box", "mkv_ebml", "avi_riff"}
    verdicts = [o.verdict for o in outcomes]
    assert verdicts.count("ok") >= 10 and verdicts.count("refused") >= 5   # both paths were exercised


def test_mutations_are_deterministic_and_structured(fuzz, seeds):
    data = seeds[0].path.read_bytes()
    for name, fn in fuzz.mutators_for("mp4"):
        a, b = fn(data, random.Random("x")), fn(data, random.Random("x"))
        assert a == b and a != data, name
    boxes = {kind for _, _, kind in fuzz.mp4_boxes(data)}
    assert {b"moov", b"trak", b"stsz", b"stco", b"stts"} <= boxes
    avi = {kind for _, _, kind in fuzz.riff_chunks(seeds[1].path.read_bytes())}
    assert {b"LIST", b"avih", b"strh", b"strf", b"idx1"} <= avi


def test_ebml_parser_finds_tracks_and_clusters(fuzz, tmp_path):
    from synth import make_clip
    clip = make_clip(tmp_path / "a.mkv", 96, 64, frames=4, faces=[])
    ids = {e[3] for e in fuzz.ebml_elements(clip.path.read_bytes())}
    assert {0x1A45DFA3, 0x18538067, 0x1654AE6B, 0xAE, 0x1F43B675, 0xA3} <= ids


def test_checker_catches_leaks_and_bad_exits(fuzz, seeds, tmp_path):
    """The checks can fail: an unredacted output is a leak; a traceback, a file left behind after
    an error, or a hang are failures."""
    mp4 = seeds[0]
    assert len(fuzz.leaks(mp4, mp4.path)) == len(mp4.times)        # the seed itself: every frame leaks
    data = mp4.path.read_bytes()
    copy_out = ("import shutil, sys; shutil.copy(sys.argv[1], sys.argv[3] + '/x.mp4')")
    fakes = {
        "leak": [sys.executable, "-c", copy_out],
        "traceback": [sys.executable, "-c", "raise ValueError('boom')"],
        "left": [sys.executable, "-c", copy_out + "; print('trt-anon: error: x', file=sys.stderr); sys.exit(1)"],
        "hang": [sys.executable, "-c", "import time; time.sleep(30)"],
        "two_lines": [sys.executable, "-c", "import sys; sys.stderr.write('a\\ntrt-anon: error: b\\n'); sys.exit(1)"],
    }
    for name, cli in fakes.items():
        o = fuzz.run_case(mp4, "none", data, tmp_path, name, timeout=5, keep=None, cli=cli)
        assert o.verdict == "failure", (name, o)
    ok = fuzz.run_case(mp4, "none", data, tmp_path, "real", timeout=60, keep=None)
    assert ok.verdict == "ok", ok


def test_read_error_mid_file_keeps_what_came_before(fuzz, tmp_path):
    """Found by the campaign (case 19 of --seed 15): one byte removed from an AVI's index makes
    the demuxer fail mid-file (ENOMEM on a garbage chunk size); was an internal error. Now
    reading stops there, as at the end of a cut file, every frame read is redacted, and the
    report says so."""
    import av
    from helpers import audio_packets
    from synth import make_old_avi

    import trt_anon
    clip = make_old_avi(tmp_path / "seed.avi", fuzz.W, fuzz.H, fuzz.FRAMES, fuzz.FPS, fuzz.FACES)
    d = clip.path.read_bytes()
    (idx1,) = [c for c in fuzz.riff_chunks(d) if c[2] == b"idx1"]
    bad = tmp_path / "bad.avi"
    bad.write_bytes(d[:idx1[0] + 495] + d[idx1[0] + 496:])
    with av.open(str(bad)) as c, pytest.raises(av.error.FFmpegError):
        for _ in c.demux():
            pass
    report = trt_anon.process(bad, tmp_path / "out.mkv")
    assert 0 < report.frames < fuzz.FRAMES
    assert any(w.startswith(f"reading stopped after frame {report.frames}") for w in report.warnings)
    assert any("copying audio/subtitles stopped" in w for w in report.warnings)
    assert 0 < len(audio_packets(tmp_path / "out.mkv")[0]) < len(audio_packets(clip.path)[0])
    seed = fuzz.Seed("divx", clip.path, sorted(fuzz.video_times_of(clip.path)), clip.boxes,
                     fuzz.frames_of(clip.path))
    assert fuzz.leaks(seed, tmp_path / "out.mkv") == []


def _avi_seed(fuzz, tmp_path) -> bytes:
    from synth import make_clip
    return make_clip(tmp_path / "seed.avi", fuzz.W, fuzz.H, fuzz.FRAMES, fuzz.FPS, fuzz.FACES).path.read_bytes()


def test_audio_times_going_backwards_are_moved_not_fatal(fuzz, tmp_path):
    """Found by the campaign (case 488 of --seed 2): an AVI audio chunk whose size field doubled
    gives audio packets whose times repeat; the MP4 muxer refused them ("non monotonically
    increasing dts") and the whole file failed. Such a packet is now moved just after the one
    before, every packet is kept, and the report says so."""
    import av
    from helpers import audio_packets

    import trt_anon
    d = bytearray(_avi_seed(fuzz, tmp_path))
    at = [c[0] for c in fuzz.riff_chunks(bytes(d)) if c[2] == b"01wb"][9]
    d[at + 4:at + 8] = (2 * int.from_bytes(d[at + 4:at + 8], "little")).to_bytes(4, "little")
    bad = tmp_path / "bad.avi"
    bad.write_bytes(bytes(d))
    with av.open(str(bad)) as c:
        dts = [p.dts for p in c.demux(audio=0) if p.size]
    assert any(b <= a for a, b in zip(dts, dts[1:]))           # the damage: times do not increase
    report = trt_anon.process(bad, tmp_path / "out.mp4")
    assert any("time went backwards" in w for w in report.warnings), report.warnings
    assert audio_packets(tmp_path / "out.mp4") == audio_packets(bad)


def test_absurd_time_base_refused_in_one_line(fuzz, tmp_path):
    """Found by the campaign (case 593 of --seed 2): a damaged AVI stream header made a tick
    7 years long; the MP4 muxer failed with "Invalid argument". Now a clear one-line error."""
    from test_cli import assert_one_line_error, cli, leftovers
    d = bytearray(_avi_seed(fuzz, tmp_path))
    strh = next(c[0] for c in fuzz.riff_chunks(bytes(d)) if c[2] == b"strh")
    d[strh + 8 + 20:strh + 8 + 28] = (2042804897).to_bytes(4, "little") + (9).to_bytes(4, "little")  # scale, rate
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    bad = tmp_path / "in" / "bad.avi"
    bad.write_bytes(bytes(d))
    r = cli(bad, "-o", tmp_path / "out", "-q")
    assert_one_line_error(r, match="s per tick is not a video's (damaged header?)")
    assert leftovers(tmp_path / "out") == []
