"""The GPU path's stages overlapping, rehearsed on the CPU: decoding a batch ahead in a thread of its own (order
kept, errors raised where they belong, a clean end however the loop ends, the loop's stream waiting for the
decoder's event), PyNvVideoCodec asked for exactly the frames the file has, and a whole GPU run decoding ahead."""
from __future__ import annotations

import sys
import threading
import time
import types
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from gpu_standins import pynvvideocodec_module
from test_gpu_strict import strict_gpu  # noqa: F401  (fixture: strict CuPy stand-in, CPU PyTorch as CUDA)

from trt_anon.decode.ahead import Ahead
from trt_anon.decode.batch import Batch


class Streams:
    """``cupy.cuda`` as the decode thread and the loop use it: streams per thread, events logged (which stream
    recorded each, in which thread; which stream waited for which)."""

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.local = threading.local()
        self.lock = threading.Lock()
        outer = self

        class Stream:
            def __init__(self, non_blocking: bool = False, name: str | None = None) -> None:
                self.name = name or f"stream-{threading.current_thread().name}"

            def record(self):
                with outer.lock:
                    outer.log.append(("record", self.name, len(outer.log)))
                    return ("event", self.name, len(outer.log) - 1)

            def wait_event(self, event) -> None:
                with outer.lock:
                    outer.log.append(("wait", self.name, event))

            def __enter__(self):
                outer.local.stream = self
                return self

            def __exit__(self, *exc) -> None:
                outer.local.stream = None

        self.Stream = Stream
        self.legacy = Stream(name="legacy")

    def current(self):
        return getattr(self.local, "stream", None) or self.legacy

    def module(self) -> types.ModuleType:
        cp = types.ModuleType("cupy")
        cp.cuda = types.SimpleNamespace(Stream=self.Stream, get_current_stream=self.current)
        return cp


@pytest.fixture
def streams(monkeypatch):
    s = Streams()
    monkeypatch.setitem(sys.modules, "cupy", s.module())
    return s


def batches(n: int, made: list | None = None, fail_at: int | None = None):
    """``n`` one-frame batches; ``made`` notes each as it is made (and the thread that made it)."""
    for i in range(n):
        if i == fail_at:
            raise ValueError(f"damaged packet at batch {i}")
        if made is not None:
            made.append((i, threading.current_thread().name))
        yield Batch(np.full((1, 2, 2, 3), i, np.uint8), [i], Fraction(1, 30), i)


def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "trt_anon-decode"]


def test_decoding_ahead_keeps_every_batch_in_order_and_ends_its_thread(streams):
    made: list = []
    got = [(b.start, int(b.frames[0, 0, 0, 0])) for b in Ahead(batches(20, made))]
    assert got == [(i, i) for i in range(20)]
    assert {t for _, t in made} == {"trt_anon-decode"} and decode_threads() == []


def test_the_loop_waits_on_the_gpu_for_what_the_decode_thread_queued(streams):
    """Each batch is handed over with an event recorded on the decode thread's stream after it was made; the
    loop's stream waits for that event before the loop sees the batch; no host wait."""
    seen = []
    for b in Ahead(batches(3)):
        seen.append((b.start, list(streams.log)))
    for start, log in seen:
        recorded = [e for e in log if e[0] == "record" and e[1] == "stream-trt_anon-decode"]
        event = ("event", "stream-trt_anon-decode", log.index(recorded[start]))
        assert ("wait", "legacy", event) in log, log


def test_a_decoder_error_reaches_the_loop_after_the_batches_before_it(streams):
    got = []
    with pytest.raises(ValueError, match="damaged packet at batch 3"):
        for b in Ahead(batches(10, fail_at=3)):
            got.append(b.start)
    assert got == [0, 1, 2] and decode_threads() == []


def test_the_loop_stopping_early_stops_the_decoder(streams):
    """An error in the loop (or Ctrl-C) ends the decode thread and closes its decoder; at most the batches
    already ahead were decoded, not the rest of the file."""
    made: list = []
    closed = threading.Event()

    def decoder():
        try:
            yield from batches(1000, made)
        finally:
            closed.set()

    with pytest.raises(RuntimeError, match="the loop failed"):
        for b in Ahead(decoder()):
            if b.start == 2:
                raise RuntimeError("the loop failed")
    assert closed.is_set() and decode_threads() == []
    assert len(made) <= 2 + 3, len(made)  # the batch the loop held, the one queued, the one being handed over


def test_a_slow_decoder_overlaps_the_loop(streams):
    """Decoding and the loop's own work take turns no more: 6 batches, 0.05 s to decode and 0.05 s to work on
    each, take about 0.35 s, not 0.6 s."""
    def slow():
        for b in batches(6):
            time.sleep(0.05)
            yield b

    t0 = time.perf_counter()
    for _ in Ahead(slow()):
        time.sleep(0.05)
    assert time.perf_counter() - t0 < 0.5


# --- PyNvVideoCodec: only the frames the file has ----------------------------------------------------------
@pytest.mark.parametrize("threaded", [True, False], ids=["ThreadedDecoder", "SimpleDecoder"])
@pytest.mark.parametrize("n", [1, 33, 70])
def test_nvdec_asks_only_for_the_frames_the_file_has(strict_gpu, monkeypatch, tmp_path, threaded, n):  # noqa: F811
    """Never a request past the end (each frame past it was an ``INVALID INDEX`` line in the H200's log), every
    frame in order with the container's timestamps, each copied out of the decoder's surfaces before the next
    request (the stand-in scribbles over frames it lent), ThreadedDecoder ended."""
    from helpers import decode_frames, video_times
    from synth import Face, make_clip

    from trt_anon.decode.nvdec import NvDecoder

    nvc = pynvvideocodec_module(threaded=threaded)
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", nvc)
    clip = make_clip(tmp_path / "c.mp4", 96, 64, frames=n, audio=0, faces=[Face(40, (10, 10), (0.5, 0.2))])
    got = list(NvDecoder(clip.path, 32, Fraction(1, 30)))
    assert [len(b) for b in got] == [min(32, n - s) for s in range(0, n, 32)]
    assert [b.start for b in got] == list(range(0, n, 32))
    with av.open(str(clip.path)) as c:
        tb = c.streams.video[0].time_base
    assert [t * tb for b in got for t in b.pts] == video_times(clip.path)
    ref = np.stack(decode_frames(clip.path)).astype(int)
    frames = np.concatenate([strict_gpu.asnumpy(b.frames) for b in got]).astype(int)
    assert np.abs(frames - ref).mean() < 1.5
    assert nvc.log.past_end == [] and nvc.log.kind == ("ThreadedDecoder" if threaded else "SimpleDecoder")
    assert nvc.log.ended == threaded


def test_a_gpu_run_decodes_ahead_in_its_own_thread(strict_gpu, monkeypatch, tmp_path):  # noqa: F811
    """process(backend="gpu") with PyNvVideoCodec: the first batch is decoded when the decoder is chosen, every
    other in the decode thread; every frame written with its faces covered, nothing asked past the end."""
    from helpers import check_redacted, video_times
    from synth import Face, make_clip

    import trt_anon
    from trt_anon import stages
    from trt_anon.decode.nvdec import NvDecoder

    nvc = pynvvideocodec_module()
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", nvc)
    monkeypatch.setattr(stages, "select_gpu_decoder", lambda path, n, tb, cs: __import__(
        "trt_anon.decode", fromlist=["Primed"]).Primed(NvDecoder(path, n, tb, colorspace=cs)))
    clip = make_clip(tmp_path / "in.mp4", 320, 180, frames=45, faces=[Face(64, (40, 40), (3.0, 0.5))])
    out = tmp_path / "out.mp4"
    report = trt_anon.process(clip.path, out, backend="gpu", batch_size=16)
    assert report.backends["decode"] == "pynvvideocodec" and report.frames == 45
    assert nvc.log.threads[0] == threading.current_thread().name
    assert set(nvc.log.threads[1:]) == {"trt_anon-decode"} and len(nvc.log.threads) == 3
    assert nvc.log.past_end == [] and nvc.log.ended and decode_threads() == []
    assert video_times(out) == video_times(clip.path)
    check_redacted(clip, clip.path, out, max_bg=4.0)


# --- several files at once on one GPU ----------------------------------------------------------------------
def test_several_files_at_once_on_one_gpu_give_each_file_as_alone(strict_gpu, monkeypatch, tmp_path):  # noqa: F811
    """trt-anon a b c --backend gpu: the three files at once on one GPU (each its own PyNvVideoCodec session,
    detector, redactor and encoder thread; the stand-in GPU's memory fits them): every file's frames, as handed
    to its encoder, and its JSON's boxes exactly as the file alone gives them; every face covered in every frame
    written. (The encoded bytes are not compared: on this machine libx264's packets are not the same from run to
    run even for a file alone; the frames it is given are.)"""
    import hashlib
    import json

    from helpers import check_redacted
    from synth import Face, make_clip

    from trt_anon import stages
    from trt_anon.cli import main
    from trt_anon.decode import Primed
    from trt_anon.decode.nvdec import NvDecoder
    from trt_anon.encode.gpu import GpuYuvEncoder

    nvc = pynvvideocodec_module()
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", nvc)
    monkeypatch.setattr(stages, "select_gpu_decoder",
                        lambda path, n, tb, cs: Primed(NvDecoder(path, n, tb, colorspace=cs)))
    handed: dict[str, list] = {}
    encode = GpuYuvEncoder.encode

    def noted(self, frames, pts):
        stem = Path(self.output.name).name.split(".")[1]  # the temporary output, .NAME.XXXX.part.mp4
        handed.setdefault(stem, []).extend((t, hashlib.sha1(strict_gpu.asnumpy(f).tobytes()).hexdigest())
                                           for f, t in zip(frames, pts))
        return encode(self, frames, pts)
    monkeypatch.setattr(GpuYuvEncoder, "encode", noted)
    clips = [make_clip(tmp_path / f"{name}.mp4", 320, 180, frames=24, audio=0, faces=faces) for name, faces in (
        ("a", [Face(64, (40, 40), (3.0, 0.5))]), ("b", [Face(56, (200, 60), (-2.0, 0.3), flip=True)]),
        ("c", [Face(48, (120, 20), (1.0, 1.0)), Face(40, (20, 120), (2.0, -0.5), enter=8)]))]
    (tmp_path / "alone").mkdir()
    for clip in clips:  # alone: one input, one at a time
        assert main([str(clip.path), "-o", str(tmp_path / "alone" / f"{clip.path.stem}.mp4"), "--backend", "gpu",
                     "--batch-size", "16", "--json", str(tmp_path / "alone" / f"{clip.path.stem}.json"), "-q"]) == 0
    alone, handed = handed, {}
    nvc.log.threads.clear()
    assert main([*(str(c.path) for c in clips), "-o", str(tmp_path / "together"), "--backend", "gpu",
                 "--batch-size", "16", "--json", str(tmp_path / "together"), "-q"]) == 0
    assert len({t for t in nvc.log.threads if t.startswith("trt_anon-file")}) == 3  # each file its own thread
    assert set(handed) == {"a", "b", "c"} and handed == alone
    for clip in clips:
        name = clip.path.stem
        boxes = [json.loads(p.read_text())["frames"] for p in (tmp_path / "alone" / f"{name}.json",
                                                                tmp_path / "together" / f"{name}.anon.json")]
        assert boxes[0] == boxes[1] and any(f["faces"] for f in boxes[0])
        check_redacted(clip, clip.path, tmp_path / "together" / f"{name}.anon.mp4", max_bg=4.0)


def test_an_interrupted_run_of_several_files_stops_them_all():
    """Ctrl-C (here: raised in one file's run) stops the files running beside it at their next batch, and the
    call returns only once they have ended (each removes its partial output on the way out)."""
    from trt_anon.cli import _at_once, _Stoppable

    stop, ended = threading.Event(), []

    def one(src, slot):
        if src.name == "a":
            time.sleep(0.2)
            raise KeyboardInterrupt
        bar = _Stoppable(types.SimpleNamespace(update=lambda n: None), stop)
        try:
            while True:  # a run, batch after batch
                bar.update(1)
                time.sleep(0.01)
        finally:
            ended.append(src.name)

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        _at_once(one, [Path("a"), Path("b"), Path("c")], 3, stop)
    assert sorted(ended) == ["b", "c"] and time.perf_counter() - t0 < 5
    assert not [t for t in threading.enumerate() if t.name.startswith("trt_anon-file")]


def test_files_at_once_follow_the_gpus_free_memory(monkeypatch, tmp_path):
    """One at a time on the CPU path or for one video; on a GPU as many videos as its free memory holds at the
    measured 12 GiB per 1080p file in batches of 32, scaled to the largest frame, at most 7."""
    from synth import make_clip

    from trt_anon import Config, cuda
    from trt_anon.plan import files_at_once

    clips = [make_clip(tmp_path / f"{i}.mp4", 1920, 1080, frames=2, audio=0, faces=[]).path for i in range(8)]
    monkeypatch.setattr(cuda, "available", lambda: True)
    monkeypatch.setattr(cuda, "free_bytes", lambda: 80 << 30)
    assert files_at_once(Config(), clips) == 6                       # 80 GiB * 0.9 / 12 GiB
    assert files_at_once(Config(), clips[:2]) == 2
    assert files_at_once(Config(batch_size=64), clips) == 3
    assert files_at_once(Config(backend="cpu"), clips) == 1 and files_at_once(Config(), clips[:1]) == 1
    monkeypatch.setattr(cuda, "free_bytes", lambda: 140 << 30)
    assert files_at_once(Config(), clips) == 7
    monkeypatch.setattr(cuda, "available", lambda: False)
    assert files_at_once(Config(), clips) == 1


def test_nvdec_falls_back_to_the_simple_decoder_when_the_threaded_one_cannot_open(strict_gpu, monkeypatch,  # noqa: F811
                                                                                   tmp_path):
    from synth import make_clip

    from trt_anon.decode.nvdec import NvDecoder

    nvc = pynvvideocodec_module()

    def refuses(*a, **k):
        raise RuntimeError("ThreadedDecoder: cannot open (test)")
    monkeypatch.setattr(nvc, "ThreadedDecoder", refuses)
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", nvc)
    clip = make_clip(tmp_path / "c.mp4", 96, 64, frames=5, audio=0, faces=[])
    assert sum(len(b) for b in NvDecoder(clip.path, 32, Fraction(1, 30))) == 5 and nvc.log.kind == "SimpleDecoder"
