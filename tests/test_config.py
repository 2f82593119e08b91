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
    assert (c.target, c.mosaic_cell, c.batch_size, c.ttl, c.eyes_every, c.backend) == ("face", 25, 32, 5, 4, "auto")


def test_threshold_is_the_models_own_unless_given():
    assert Config().threshold_for("int8") == 0.2 and Config().threshold_for("fp32") == 0.15
    assert Config(threshold=0.3).threshold_for("int8") == 0.3


def test_auto_det_size_is_full_resolution_on_a_gpu_up_to_1440p():
    from trt_anon.detect.centerface import Geometry

    assert Config().det_size_for(gpu=False) == "auto" and Config(det_size=640).det_size_for(gpu=True) == 640
    gpu = Config().det_size_for(gpu=True)
    assert Geometry.fit(1080, 1920, gpu).scale == 1.0 and Geometry.fit(1080, 1920, "auto").scale == 2 / 3
    assert Geometry.fit(2160, 3840, gpu).in_w == 2560
