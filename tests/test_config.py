import pytest

from trt_anon import Config, ConfigError


@pytest.mark.parametrize("opts,msg", [
    ({"target": "body"}, "target"), ({"threshold": 1.5}, "threshold"), ({"det_size": 650}, "multiple of 32"),
    ({"det_size": "big"}, "det_size"), ({"mosaic_cell": "huge"}, "mosaic_cell"),
    ({"batch_size": 0}, "batch_size"), ({"mosaic_cell": 1}, "mosaic_cell"), ({"backend": "tpu"}, "backend"),
    ({"ttl": -1}, "ttl"), ({"crf": 64}, "crf"), ({"codec": "h264", "crf": 52}, "crf"), ({"preset": "turbo"}, "preset"),
    ({"thresold": 0.3}, "unknown"),
    ({"cpu_precision": "int4"}, "cpu_precision"), ({"codec": "vp8"}, "codec"), ({"codec": "vp9", "crf": 64}, "crf"),
    ({"lookback": 500}, "lookback"),
])
def test_bad_options_are_named(opts, msg):
    with pytest.raises(ConfigError, match=msg):
        Config.from_options(**opts)


def test_defaults():
    c = Config()
    assert (c.target, c.mosaic_cell, c.batch_size, c.ttl, c.eyes_every, c.backend) == ("face", 25, None, 5, 4, "auto")
    assert Config(mosaic_cell="auto").mosaic_cell == 25  # what "auto" asked for is every run's behaviour now


def test_threshold_is_the_models_own_unless_given():
    assert Config().threshold_for("int8") == 0.2 and Config().threshold_for("fp32") == 0.15
    assert Config(threshold=0.3).threshold_for("int8") == 0.3


def test_auto_det_size_is_full_resolution_on_a_gpu_up_to_1440p():
    from trt_anon.detect.centerface import Geometry

    assert Config().det_size_for(gpu=False) == "auto" and Config(det_size=640).det_size_for(gpu=True) == 640
    gpu = Config().det_size_for(gpu=True)
    assert Geometry.fit(1080, 1920, gpu).scale == 1.0 and Geometry.fit(1080, 1920, "auto").scale == 2 / 3
    assert Geometry.fit(2160, 3840, gpu).in_w == 2560


def test_batch_size_default_is_per_backend_and_an_explicit_one_wins():
    """The GPU keeps large batches; on the CPU a batch only holds frames (bench.py: 8 is as fast as 32, less memory)."""
    from trt_anon.config import CPU_BATCH, GPU_BATCH

    assert (GPU_BATCH, CPU_BATCH) == (32, 8)
    assert Config().batch_for(gpu=True) == 32 and Config().batch_for(gpu=False) == 8
    assert Config(batch_size=16).batch_for(gpu=True) == Config(batch_size=16).batch_for(gpu=False) == 16


def test_batch_size_is_settled_in_the_plan(clips, tmp_path, monkeypatch):
    from PIL import Image
    from skimage.data import astronaut

    from trt_anon import plan as planning

    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()).save(photo)

    def batch(src=clips["two"].path, **options):
        return planning.plan(src, tmp_path, Config(**options)).config.batch_size

    assert batch(backend="cpu") == 8
    assert batch() == 8  # auto without a GPU: the CPU path
    monkeypatch.setattr(planning.cuda, "available", lambda: True)
    assert batch() == 32
    assert batch(backend="gpu") == 32
    assert batch(backend="cpu") == 8
    assert batch(photo) == 8  # photos take the CPU path
    assert batch(batch_size=4) == 4


def test_the_out_of_memory_retry_takes_a_quarter_of_the_gpu_batch(clips, tmp_path, monkeypatch):
    from trt_anon import plan as planning

    monkeypatch.setattr(planning.cuda, "available", lambda: True)
    job = planning.plan(clips["two"].path, tmp_path / "named.mkv", Config(crf=20))
    tries = [job, *planning.fallbacks(job)]
    assert [(p.config.backend, p.config.batch_size) for p in tries] == [("auto", 32), ("auto", 8), ("cpu", 8)]
    assert {(p.output, p.named, p.config.codec, p.config.crf) for p in tries} == {(job.output, True, "h264", 20)}
    assert list(planning.fallbacks(planning.plan(clips["two"].path, tmp_path, Config(backend="cpu")))) == []
