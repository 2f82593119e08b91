"""The Ray layer's parts that need no Ray: segment planning, context length, the missing-Ray error."""
from __future__ import annotations

import sys

import pytest
from synth import make_clip

from trt_anon import scale
from trt_anon.cli import main
from trt_anon.config import Config
from trt_anon.errors import ConfigError


def test_context_frames_follow_the_config():
    assert scale.context_frames(Config()) == 2 * (5 + 4 + 30)  # ttl, eyes_every, lookback
    assert scale.context_frames(Config(ttl=10, eyes_every=8, lookback=0)) == 2 * (10 + 8)


def test_segments_cut_at_keyframes_with_whole_batches_of_context(tmp_path):
    clip = make_clip(tmp_path / "k.mp4", 160, 96, frames=130, audio=0, keyint=25, faces=[])
    cfg = Config(batch_size=16, codec="h264")  # process_many settles the codec for the output first
    segs = scale.plan_segments(clip.path, cfg, 40)
    assert [(s.start, s.end) for s in segs] == [(0, 50), (50, 100), (100, 130)]
    ctx = scale.context_frames(cfg)
    for s in segs:
        assert s.first % 16 == 0 and s.first <= max(s.start - ctx, 0)
        assert (s.stop % 16 == 0 or s.stop == 130) and s.stop >= min(s.end + ctx, 130)
        assert s.seek_index % 25 == 0 and s.seek_index <= s.first
    assert scale.plan_segments(clip.path, cfg, 100) == []  # too short to split
    with pytest.raises(ConfigError, match="batch"):  # the default (None) is settled per backend first
        scale.plan_segments(clip.path, Config(codec="h264"), 40)


def test_ray_missing_is_one_line_error(clips, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main([str(clips["two"].path), "--ray", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install 'trt_anon[ray]'" in err


def test_ray_options_need_ray(clips, capsys):
    assert main([str(clips["two"].path), "--skip-existing", "-q"]) == 2
    assert "need --ray" in capsys.readouterr().err
