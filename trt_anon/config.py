"""All options in one validated dataclass, shared by the API and the CLI."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Literal

from .detect import MODELS, load_model
from .detect.centerface import MODEL as CENTERFACE
from .encode.codecs import CODECS as CODEC_TABLE
from .encode.codecs import PRESETS, check_crf
from .errors import ConfigError

BACKENDS = ("auto", "cpu", "gpu")
TARGETS = ("face", "eyes")
PRECISIONS = ("int8", "fp32")
CODECS = tuple(CODEC_TABLE)                          # the codecs trt_anon writes: encode/codecs.py
# Frames per batch when batch_size is None. GPU: kernels and engines want large batches. CPU: the detector runs a
# frame at a time, so a batch only sets how many frames are held (decoded, waiting ``lookback``, encoding); measured
# with scripts/bench.py (docs/performance.md): 8 is as fast as 32 at 720p with ~30% less peak memory.
GPU_BATCH = 32
CPU_BATCH = 8
# The CPU's batch holds about this many pixels (8 frames of 1080p): larger frames come in smaller batches
# (4K: 2), which changes nothing in the output (the detector takes one frame at a time there) and saves
# ~400 MiB at 4K (scripts/bench.py --memory-4k).
CPU_BATCH_PIXELS = CPU_BATCH * 1920 * 1080
# Frames waiting for back-fill (``lookback`` and a batch) that would hold more than this are not held: the
# file is decoded a second time, in step, for writing (pipeline.Stages.replay). As RGB, 1080p (~260 MiB) stays
# held, 1440p and 4K are decoded twice (at 4K ~750 MiB less, for a second decode at ~5% of the time); as the
# decoder's 4:2:0 planes (half the bytes), 1440p stays held too.
HOLD_BYTES = 320 * 2**20
STYLES = ("mosaic", "blur", "solid")
# detect_every: the longest run of frames between two the detector looks at is MAX_DETECT_EVERY - 1 (the tracker
# interpolates them, so it holds at least this many frames); "auto" looks at least every AUTO_MAX_EVERY frames.
MAX_DETECT_EVERY = 8
AUTO_MAX_EVERY = 4


def option(default, help: str, **cli):
    """A Config field that is also a command-line option: its ``help``, and for argparse ``choices``, ``type``,
    ``metavar`` or ``flag`` (default ``--field-name``). The CLI is built from these (cli.py), so an option's
    default, accepted values and help are declared once, here."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class Config:
    """What to redact and how. Defaults are the measured ones (README, Options; docs/quality.md)."""

    target: Literal["face", "eyes"] = option("face", "what to cover (default: face)", choices=TARGETS)
    threshold: float | None = option(  # None: the model's own (Model.thresholds)
        None, "detection score threshold, lower finds more (default "
        f"{CENTERFACE.thresholds['int8']} with the CPU's int8 model, {CENTERFACE.thresholds['fp32']} with fp32 and "
        "on the GPU)", type=float)
    det_size: int | str = option(
        "auto", "detection resolution, long side in pixels (multiple of 32), or 'auto': on the CPU 2/3 of the frame's "
        "long side, so faces from 24 px are found; on a GPU the full frame up to 2560 (default auto)")
    batch_size: int | None = option(  # None: batch_for's default
        None, f"frames per batch (default {GPU_BATCH} on a GPU, {CPU_BATCH} on the CPU, fewer for frames larger than "
        "1080p: more only holds more frames in memory there)", type=int)
    mosaic_cell: int = option(
        25, "smallest mosaic cell in pixels; a larger face gets a multiple of it, at most 4 cells across the face, so "
        "large faces stay unrecognisable too (default 25; auto: the same)")
    style: str = option(  # a name in STYLES: a module in redact/styles/
        "mosaic", "how faces are covered: mosaic (default, cells of 25 px or more), blur (strong: about 3 blur cells "
        "across a face, none of its detail survives) or solid (a flat --fill-color)", choices=STYLES)
    fill_color: tuple[int, int, int] | str = option(
        (0, 0, 0), "colour of --style solid, #rrggbb or r,g,b (default #000000, black)", metavar="COLOR")
    margin_px: int = 12             # face box grown by this many pixels per side ...
    margin_rel: float = 0.1         # ... plus this fraction of its width/height per side
    ttl: int = option(5, "frames a face box is held after its last hit / back-filled before its first (default 5)",
                      type=int)
    lookback: int = option(
        36, "frames a new face may be back-filled along its motion; frames are written this late (default 36; "
        "memory grows past --batch-size)", type=int)
    eyes_every: int = 4             # eye bands re-derived from landmarks every Nth frame
    detect_every: int | str = option(  # the frames between looks interpolated from the looks on either side
        "auto", "run the detector on every Nth frame (1-8) and interpolate the boxes between, or 'auto' (default): "
        "every frame while a face appears, fades, is hidden or moves fast, up to every 4th where every face is "
        "where its motion says; 1 looks at every frame", metavar="N|auto")
    backend: Literal["auto", "cpu", "gpu"] = option(
        "auto", "auto (default): the fastest stage that runs here, per stage; cpu or gpu: only those, an error if "
        "they cannot run", choices=BACKENDS)
    cpu_precision: Literal["int8", "fp32"] = option(
        "int8", "CPU detector model: int8 (default; 1.2-2.2x as fast where the CPU has AVX-512 VNNI, as fast "
        "elsewhere; no more leaks in the eval) or fp32 (the original network)", choices=PRECISIONS)
    model: str = option("centerface", "detector network: centerface (faces, with eye positions; default)",
                        choices=MODELS)
    codec: str | None = option(  # one of CODECS; None: encode.choose_codec decides
        None, "output video codec: h264 (plays everywhere), hevc (smaller), vp9 or av1 (WebM); default: h264, hevc "
        "for 10-bit or HDR input; vp9 where the container cannot hold those (.webm; av1 for 10-bit or HDR)",
        choices=CODECS)
    crf: int | None = option(  # None: the codec's own (Codec.crf)
        None, "quality, lower is better (default: " + ", ".join(f"{n} {c.crf}" for n, c in CODEC_TABLE.items()) + ")",
        type=int)
    preset: str = option(
        "veryfast", f"encoder speed, x264's names ({', '.join(PRESETS)}), also mapped for vp9/av1 (default veryfast)",
        choices=PRESETS, metavar="PRESET")
    overwrite: bool = option(False, "replace existing outputs")
    keep_metadata: bool = option(False, "keep location/device tags (removed by default: privacy)")
    json_path: str | None = option(
        None, "write per-frame boxes and the report as JSON (a folder when there are several inputs)",
        flag="--json", metavar="PATH")
    engine_path: str | None = option(
        None, "TensorRT engine to use instead of the engines/ cache (checked against its .json sidecar)",
        flag="--engine", metavar="PATH")
    keep_faces: tuple[str, ...] = option(
        (), "a photo (or a folder of photos) of a person who consented: their face stays visible where the tracker "
        "follows it and it matches surely (several of its faces, closely); everyone else is redacted. Repeat for "
        "each person. Needs pip install 'trt_anon[consent]'", flag="--keep-face", action="append", metavar="PATH")
    decisions_path: str | None = option(
        None, "render again with a first run's --json file as edited (tracks marked keep stay visible, regions "
        "added are redacted), detecting nothing; refused for another input", flag="--decisions", metavar="PATH")
    sign: tuple[str, str] | str | None = option(  # paths only: the key is read when signing, never kept or written
        None, "write Content Credentials (a signed C2PA manifest: faces obscured, by what, from which input) into "
        "the output: CERT KEY, a PEM certificate chain and its private key, or one c2pa settings .json with a "
        "signer; into MP4, MOV, M4V, AVI and photos but BMP (not MKV, WebM, FLV or 3GP); needs pip install "
        "'trt_anon[c2pa]'",
        nargs="+", metavar=("CERT", "KEY"))

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ConfigError(msg)

        if self.target not in TARGETS:
            bad(f"target must be one of {', '.join(TARGETS)}, not {self.target!r}")
        if self.backend not in BACKENDS:
            bad(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.cpu_precision not in PRECISIONS:
            bad(f"cpu_precision must be one of {', '.join(PRECISIONS)}, not {self.cpu_precision!r}")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            bad(f"threshold must be between 0 and 1 (exclusive), not {self.threshold}")
        if isinstance(self.det_size, str) and self.det_size.isdigit():
            object.__setattr__(self, "det_size", int(self.det_size))
        if self.det_size != "auto" and (not isinstance(self.det_size, int) or not 64 <= self.det_size <= 8192
                                        or self.det_size % 32):
            bad(f"det_size must be 'auto' or a multiple of 32 between 64 and 8192, not {self.det_size!r}")
        if self.batch_size is not None and not 1 <= self.batch_size <= 256:
            bad(f"batch_size must be between 1 and 256, not {self.batch_size}")
        if self.mosaic_cell == "auto":  # what "auto" used to ask for is now every run's behaviour
            object.__setattr__(self, "mosaic_cell", 25)
        if isinstance(self.mosaic_cell, str) and self.mosaic_cell.isdigit():
            object.__setattr__(self, "mosaic_cell", int(self.mosaic_cell))
        if not isinstance(self.mosaic_cell, int) or not 2 <= self.mosaic_cell <= 256:
            bad(f"mosaic_cell must be between 2 and 256 pixels, not {self.mosaic_cell!r}")
        if self.style not in STYLES:
            bad(f"style must be one of {', '.join(STYLES)}, not {self.style!r}")
        object.__setattr__(self, "fill_color", parse_color(self.fill_color))
        if self.margin_px < 0 or not 0.0 <= self.margin_rel <= 2.0:
            bad("margins must be >= 0 (margin_rel at most 2.0)")
        if not 0 <= self.ttl <= 120:
            bad(f"ttl must be between 0 and 120 frames, not {self.ttl}")
        if not 0 <= self.lookback <= 240:
            bad(f"lookback must be between 0 and 240 frames (at least ttl is used), not {self.lookback}")
        if not 1 <= self.eyes_every <= 64:
            bad(f"eyes_every must be between 1 and 64, not {self.eyes_every}")
        if self.model not in MODELS:
            bad(f"model must be one of {', '.join(MODELS)}, not {self.model!r}")
        if self.target == "eyes" and not load_model(self.model).landmarks:
            bad(f"target eyes needs eye positions, which the {self.model} model does not give")
        if self.codec is not None and self.codec not in CODECS:
            bad(f"codec must be one of {', '.join(CODECS)}, not {self.codec!r}")
        if self.crf is not None:
            check_crf(self.codec, self.crf)
        if self.preset not in PRESETS:
            bad(f"preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        keep = self.keep_faces
        keep = () if keep is None else (keep,) if isinstance(keep, (str, os.PathLike)) else keep
        object.__setattr__(self, "keep_faces", tuple(os.fspath(p) for p in keep))
        if self.keep_faces and self.decisions_path:
            bad("keep_faces and decisions_path: a decisions file says itself who stays visible (its tracks' "
                "actions); run --keep-face on the first run")
        if isinstance(self.detect_every, str) and self.detect_every.isdigit():
            object.__setattr__(self, "detect_every", int(self.detect_every))
        if self.detect_every != "auto" and (isinstance(self.detect_every, bool) or not isinstance(
                self.detect_every, int) or not 1 <= self.detect_every <= MAX_DETECT_EVERY):
            bad(f"detect_every must be 'auto' or between 1 and {MAX_DETECT_EVERY}, not {self.detect_every!r}")
        if self.sign is not None:
            try:
                sign = tuple(map(os.fspath, [self.sign] if isinstance(self.sign, (str, os.PathLike)) else self.sign))
            except TypeError:
                sign = ()
            if len(sign) not in (1, 2):
                bad(f"sign must be (CERT, KEY), PEM files, or one c2pa settings file, not {self.sign!r}")
            object.__setattr__(self, "sign", sign[0] if len(sign) == 1 else sign)

    def det_size_for(self, gpu: bool) -> int | str:
        """The detection size for a backend: "auto" is full resolution on a GPU (up to 1440p), 2/3 on a CPU."""
        return "auto-gpu" if gpu and self.det_size == "auto" else self.det_size

    def batch_for(self, gpu: bool, pixels: int = 0) -> int:
        """Frames per batch on a backend: the option if given, else that backend's measured default (on the CPU,
        fewer for frames larger than 1080p, ``pixels`` being a frame's width x height)."""
        if self.batch_size is not None:
            return self.batch_size
        return GPU_BATCH if gpu else max(1, min(CPU_BATCH, CPU_BATCH_PIXELS // max(pixels, 1)))

    def longest_gap(self) -> int:
        """The most frames from one the detector looks at to the next (1: it looks at every frame)."""
        return AUTO_MAX_EVERY if self.detect_every == "auto" else self.detect_every

    def threshold_for(self, precision: str) -> float:
        """The detection threshold for a model: the option if given, else that model's measured one."""
        return self.threshold if self.threshold is not None else load_model(self.model).thresholds[precision]

    @classmethod
    def from_options(cls, base: "Config | None" = None, /, **options) -> "Config":
        """Build from keyword options (over ``base``'s values), naming any unknown one (typos must not pass
        silently) and checking the result as a new Config is checked."""
        fields = dataclasses.fields(cls)
        unknown = sorted(set(options) - {f.name for f in fields})
        if unknown:
            raise ConfigError(f"unknown option(s): {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(f.name for f in fields))}")
        if base is not None:
            options = {**{f.name: getattr(base, f.name) for f in fields}, **options}
        try:
            return cls(**options)
        except TypeError as exc:  # pragma: no cover - defensive
            raise ConfigError(str(exc)) from None


def parse_color(value) -> tuple[int, int, int]:
    """An RGB colour from (r, g, b), "#rrggbb" or "r,g,b" (0-255 each); ConfigError otherwise."""
    try:
        if isinstance(value, str) and value.startswith("#") and len(value) == 7:
            rgb = tuple(int(value[i:i + 2], 16) for i in (1, 3, 5))
        else:
            rgb = tuple(int(v) for v in (value.split(",") if isinstance(value, str) else value))
        if len(rgb) == 3 and all(0 <= v <= 255 for v in rgb):
            return rgb
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"fill_color must be #rrggbb or r,g,b with values 0-255, not {value!r}")
