"""The Ray layer's parts that need no Ray: segment planning, context length, the missing-Ray error."""
from __future__ import annotations

import sys

import pytest
from helpers import NoRayCounter
from synth import make_clip

from trt_anon import scale
from trt_anon.cli import main
from trt_anon.config import Config
from trt_anon.errors import AnonError
from trt_anon.plan import plan


def test_context_frames_follow_the_config():
    assert scale.context_frames(Config()) == 2 * (5 + 4 + 36)  # ttl, eyes_every, lookback
    assert scale.context_frames(Config(ttl=10, eyes_every=8, lookback=0)) == 2 * (10 + 8)


def test_segments_cut_at_keyframes_with_whole_batches_of_context(tmp_path):
    clip = make_clip(tmp_path / "k.mp4", 160, 96, frames=130, audio=0, keyint=25, faces=[])
    cfg = Config(batch_size=16)
    job = plan(clip.path, tmp_path, cfg)
    assert job.config.codec == "h264" and job.config.batch_size == 16
    segs = scale.plan_segments(job, 40)
    assert [(s.start, s.end) for s in segs] == [(0, 50), (50, 100), (100, 130)]
    ctx = scale.context_frames(cfg)
    for s in segs:
        assert s.first % 16 == 0 and s.first <= max(s.start - ctx, 0)
        assert (s.stop % 16 == 0 or s.stop == 130) and s.stop >= min(s.end + ctx, 130)
        assert s.seek_index % 25 == 0 and s.seek_index <= s.first
    assert scale.plan_segments(job, 100) == []  # too short to split
    assert scale.plan_segments(plan(clip.path, tmp_path / "k.mkv", cfg, codec="hevc"), 40) == []  # x264 only
    assert plan(clip.path, tmp_path, Config(backend="cpu")).config.batch_size == 8  # settled in every plan


def test_ray_missing_is_one_line_error(clips, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main([str(clips["two"].path), "--ray", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install 'trt_anon[ray]'" in err


def test_ray_options_need_ray(clips, capsys):
    assert main([str(clips["two"].path), "--skip-existing", "-q"]) == 2
    assert "need --ray" in capsys.readouterr().err


def test_a_segment_decoded_twice_writes_what_it_holds(tmp_path, monkeypatch):
    """Large frames: a segment's waiting frames are decoded a second time from its own range (context frames
    included) instead of held; the pieces and their boxes are the same either way."""
    import av
    from synth import Face

    from trt_anon import stages

    clip = make_clip(tmp_path / "k.mp4", 320, 180, frames=130, audio=0, keyint=25,
                     faces=[Face(50, (20, 40), (1.5, 0.2)), Face(36, (250, 100), (-1.0, 0.0), enter=70)])
    job = plan(clip.path, tmp_path, Config(backend="cpu"))  # batch 8, h264 at crf 18, as process_many plans it
    segs = scale.plan_segments(job, 40)
    assert len(segs) == 3

    monkeypatch.setattr(scale, "_where", lambda: {})  # where a Ray task ran: no Ray here
    used = []
    frames = stages.Replay.frames
    monkeypatch.setattr(stages.Replay, "frames", lambda self: used.append(1) or frames(self))

    def pieces(hold_bytes, tag):
        monkeypatch.setattr(stages, "HOLD_BYTES", hold_bytes)
        out = []
        for s in segs:
            piece = str(tmp_path / f"{tag}{s.number}.mp4")
            scale.run_segment(job, s, piece, NoRayCounter())
            with av.open(piece) as c:
                out.append(([f.to_ndarray().tobytes() for f in c.decode(video=0)], open(piece + ".jsonl").read()))
        return out

    held = pieces(2**40, "held")
    assert not used
    twice = pieces(0, "twice")
    assert len(used) == 3
    assert [len(f) for f, _ in twice] == [s.end - s.start for s in segs]
    assert held == twice


def test_ray_tasks_share_a_gpu_as_its_memory_allows():
    """On GPUs each task asks for the share of a GPU that lets ``per_gpu`` files run on each at once (whole GPUs
    where --workers asks for fewer tasks than GPUs); on the CPU one core each, as before."""
    assert scale.task_resources({"CPU": 16, "GPU": 1}, True, None, 7) == (7, {"num_gpus": 0.1428, "num_cpus": 1})
    assert scale.task_resources({"CPU": 16, "GPU": 2}, True, None, 3) == (6, {"num_gpus": 0.3333, "num_cpus": 1})
    assert scale.task_resources({"CPU": 16, "GPU": 8}, True, 3, 7) == (3, {"num_gpus": 2, "num_cpus": 1})
    assert scale.task_resources({"CPU": 16, "GPU": 1}, True, 1, 7) == (1, {"num_gpus": 1, "num_cpus": 1})
    assert scale.task_resources({"CPU": 16}, False, None) == (16, {"num_cpus": 1.0})
    assert scale.task_resources({"CPU": 16}, False, 4) == (4, {"num_cpus": 4.0})


def test_pieces_of_different_formats_are_not_joined(tmp_path):
    """Each segment keeps its own first frame's pixel format: pieces of a video that changes format mid-file
    cannot be one stream, and the join says so in one line instead of writing it."""
    a = make_clip(tmp_path / "a.mp4", 64, 48, frames=2, audio=0, faces=[])
    b = make_clip(tmp_path / "b.mp4", 64, 48, frames=2, audio=0, faces=[], pix_fmt="yuv444p")
    scale._same_format("in.mp4", [str(a.path), str(a.path)])
    with pytest.raises(AnonError, match=r"in.mp4: its segments were written in different formats \(yuv420p 64x48, "
                                        r"yuv444p 64x48; .*run it without segments"):
        scale._same_format("in.mp4", [str(a.path), str(b.path)])
