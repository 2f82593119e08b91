"""Stage selection in one home: which decoder, detector, redactor and encoder run, and why.

Both ``process()`` (a whole file) and a Ray segment task (a frame range of a file, see
``trt_anon.scale``) call these, so a segment runs exactly the stages a whole-file run would.
Why a first choice was skipped goes into ``notes`` (they end up in the report's warnings).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import av

from . import media, planar
from .config import HOLD_BYTES, Config
from .decode import PyAVDecoder, select_gpu_decoder
from .decode.ahead import Ahead
from .detect import select_detector
from .encode import CODECS, PyAVEncoder
from .encode.codecs import add_params
from .errors import BackendError, InputError, first_line
from .plan import use_gpu
from .redact import select_redactor


@dataclass
class Chosen:
    """The decode/detect/redact stages of one run; the encoder comes once the output is open."""

    decoder: Iterable
    detector: Any
    redactor: Any
    gpu: bool
    setup: float                  # seconds spent choosing (a TensorRT engine build lands here)
    info: Any                     # the stream's VideoInfo, its size corrected from the first frame

    @property
    def decoder_name(self) -> str:
        return getattr(self.decoder, "name", "pyav")


def choose(src: Path, cpu_decoder: PyAVDecoder, info, cfg: Config, notes: list[str],
           whole_file: bool = True) -> Chosen:
    """Pick the stages. ``cpu_decoder`` is the PyAV decoder over the frames to process; its first
    batch is read here (the first frame tells the colour matrix/range and rotation).

    ``whole_file=False`` (a segment) keeps PyAV decoding, uploaded to the GPU on the GPU path:
    the GPU decoders read whole files only.
    """
    batches = iter(cpu_decoder)
    first = next(batches, None)
    if first is None:
        raise InputError(f"{src}: no frame could be decoded")
    rotation, colorspace = cpu_decoder.rotation, cpu_decoder.colorspace
    if cpu_decoder.size != (info.width, info.height):  # a damaged header: the frames say what the size is
        info = dataclasses.replace(info, width=cpu_decoder.size[0], height=cpu_decoder.size[1])

    def cpu_batches():
        yield first
        yield from batches

    gpu = use_gpu(cfg, info.is_image)
    decoder, detector, redactor = cpu_batches(), None, None
    setup = time.perf_counter()
    if gpu:
        # the detector sees frames as displayed: its engine is built (or loaded) now, for that size;
        # every kernel is compiled now too, so that any failure here is a fallback, not a failed file
        shown = (info.width, info.height) if rotation % 180 else (info.height, info.width)
        try:
            detector = select_detector(cfg, gpu=True, notes=notes, frame_hw=shown)
            redactor = select_redactor(cfg, gpu=True)
            from .detect.gpu_pre import compile_kernels as compile_pre
            from .encode.gpu_color import compile_kernels as compile_color
            compile_pre()
            compile_color()
        except Exception as exc:
            if cfg.backend == "gpu":
                raise BackendError(f"backend 'gpu' cannot run here: {first_line(exc)}") from None
            notes.append(f"CPU path: {first_line(exc)}")
            detector = redactor = None
            gpu = False
    if gpu:
        try:
            if not whole_file:
                raise BackendError("a segment is decoded by PyAV")
            decoder = select_gpu_decoder(src, cfg.batch_size, cpu_decoder.time_base, colorspace)
        except BackendError as exc:
            if cfg.backend == "gpu" and whole_file:
                raise
            notes.append(f"decode: PyAV, each batch uploaded to the GPU ({exc})")
            decoder = Uploaded(cpu_batches())
        decoder = Ahead(decoder)  # the next batch decodes while the loop works on this one
    else:
        detector = select_detector(cfg, gpu=False)
        redactor = select_redactor(cfg, gpu=False, layout=cpu_decoder.layout)
    return Chosen(decoder, detector, redactor, gpu, time.perf_counter() - setup, info)


def planar_formats(cfg: Config, info) -> frozenset[str]:
    """The pixel formats the CPU path keeps as decoded (``planar``): those the software encoder writes as well.
    None on the GPU path (its stages work on RGB on the device) or for a photo."""
    if info.is_image or use_gpu(cfg, False):
        return frozenset()
    writes = {f.name for f in av.Codec(CODECS[cfg.codec or "h264"].encoder, "w").video_formats or ()}
    return frozenset(f for f in planar.FORMATS if f in writes)


def replay_decoder(src: Path, cpu_decoder: PyAVDecoder, info, cfg: Config, make=PyAVDecoder) -> Replay | None:
    """A second decoder over ``src`` for the frames waiting for back-fill, where holding them would take more
    than ``HOLD_BYTES`` (1440p and up at the default ``lookback`` for RGB, 2160p for 4:2:0); None where they are
    held. ``make(container, batch_size, planar)`` makes it as ``cpu_decoder`` was made (a segment's decoder seeks
    to its range), so it hands out frames in the same layout."""
    layout = cpu_decoder.layout
    if layout is not None:
        frame = layout.row * layout.dtype.itemsize
    else:
        frame = info.width * info.height * 3 * (2 if cpu_decoder.deep else 1)
    held = (cfg.lookback + cfg.batch_size) * frame
    if held <= HOLD_BYTES or info.is_image:
        return None
    return Replay(make(media.open_input(src), 1, cpu_decoder.planar))


@dataclass
class Replay:
    """The file decoded a second time, in step with the first, for writing: a frame is decoded again when it
    is written instead of being held while it waits for back-fill. Decoding is deterministic, so the frames
    are the first decode's (``pipeline.run`` checks each one's time)."""

    decoder: PyAVDecoder

    @property
    def container(self):
        return self.decoder.container

    def frames(self):
        for batch in self.decoder:
            yield from zip(batch.frames, batch.pts)


class Uploaded:
    """PyAV batches moved to the GPU, for machines with CUDA but no GPU decoder package.

    The GPU stages are 8-bit (their kernels take ``unsigned char*``): deeper video, which PyAV
    decodes to uint16 RGB, is rounded to 8 bits on the device after the upload (the report warns
    that it is written as 8-bit).
    """

    name = "pyav (uploaded)"

    def __init__(self, batches) -> None:
        self.batches = batches

    def __iter__(self):
        import cupy as cp

        from .decode import Batch
        for b in self.batches:
            frames = cp.asarray(b.frames)
            if frames.dtype == cp.uint16:  # 0..65535 -> 0..255, rounded: v * 255 / 65535 = v / 257
                frames = ((frames.astype(cp.uint32) + 128) // 257).astype(cp.uint8)
            yield Batch(frames, b.pts, b.time_base, b.start)


def select_encoder(out, info, decoder, colorspace, cfg: Config, gpu: bool, notes: list[str],
                   stitchable: bool = False):
    """NVENC, else x264/x265 fed from the GPU, on the GPU path; PyAV's x264/x265 on the CPU path.

    ``stitchable`` (segments): software encoders get x264's ``stitchable`` so every segment has the
    same headers and the pieces join by packet copy; a segment always starts on a keyframe. NVENC
    has no such option and its segments are not proven to join, so segments never use it.
    """
    args = (out, info.width, info.height, info.rate, decoder.time_base, colorspace, cfg.crf, cfg.preset)
    codec = CODECS[cfg.codec or "h264"]
    software = codec.encoder
    if not gpu:
        enc = PyAVEncoder(*args, codec=software, deep=decoder.deep, layout=getattr(decoder, "layout", None))
    else:
        from .encode.gpu import GpuYuvEncoder, NvencEncoder, nvenc_available
        nvenc = codec.nvenc
        ok, why = nvenc_available(nvenc) if nvenc else (False, f"NVENC has no {codec.name} encoder")
        if ok and stitchable:
            ok, why = False, "segments are joined by packet copy, which NVENC's output is not proven to allow"
        if ok and info.width % 2 == 0 and info.height % 2 == 0:
            enc = NvencEncoder(*args, codec=nvenc)
        else:
            notes.append(f"encode: {software} from the GPU ({why or 'odd frame size'})")
            enc = GpuYuvEncoder(*args, codec=software)
    if stitchable and enc.stream.codec_context.name == "libx264":  # on the GPU path too: "libx264 (gpu yuv)"
        enc.stream.codec_context.options = add_params(enc.stream.codec_context.options, "x264-params", "stitchable=1")
    return enc
