"""Output paths and fail-closed writing: nothing appears at the output path until it is whole."""
from __future__ import annotations

import contextlib
import functools
import io
import os
import tempfile
from pathlib import Path
from typing import Iterator

import av

from ..errors import OutputError
from . import stills

IMAGE_EXTS = set(stills.FORMATS)
# Containers kept as they are (WebM with VP9, the others with H.264) when the input's audio and
# subtitles fit; others become .mp4 or .mkv (AVI cannot hold its timestamps faithfully).
KEEP_EXT = {".mp4", ".mov", ".m4v", ".mkv"}
# The video containers trt_anon writes, and FFmpeg's muxer for each (its own guess maps .mp4 to 3gp). Each
# plays every frame in order (tests/test_playable.py); any other output name is refused before any work.
MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi",
          ".flv": "flv", ".3gp": "3gp"}
# What a muxer lists but refuses when it writes the header: FFmpeg's mov muxer takes VP9 and AV1 in MP4 only.
REFUSED = {"mov": {"vp9", "av1"}}


@functools.lru_cache(maxsize=None)
def muxer_codecs(ext: str) -> frozenset[str] | None:
    """The codecs FFmpeg's muxer for ``ext`` can store, or None for an extension not in MUXERS."""
    fmt = MUXERS.get(ext.lower())
    if fmt is None:
        return None
    probe = av.open(io.BytesIO(), mode="w", format=fmt)
    try:
        return frozenset(probe.supported_codecs) - REFUSED.get(fmt, set())
    finally:
        probe.close()


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS


def default_output(src: Path, out_dir: Path | None = None, fits=lambda ext: True) -> Path:
    """``NAME.anon.EXT`` beside the input (or in ``out_dir``): the input's container where it can
    hold H.264 (WebM: VP9), else .mp4, or .mkv when ``fits(".mp4")`` says a stream could not be copied there.
    Photos keep their format (.jpeg is written .jpg; one that cannot be written here becomes .png)."""
    ext = src.suffix.lower()
    if is_image(src):
        new_ext = stills.output_ext(ext)  # a change is said in the report (api)
    elif ext in KEEP_EXT:
        new_ext = src.suffix
    elif ext == ".webm":
        new_ext = src.suffix if fits(".webm") else ".mkv"
    elif ext in {".mka", ".ogv"}:
        new_ext = ".mkv"
    else:
        new_ext = ".mp4" if fits(".mp4") else ".mkv"
    return (out_dir or src.parent) / f"{src.stem}.anon{new_ext}"


def resolve_output(src: Path, output: str | os.PathLike | None, overwrite: bool, fits=lambda ext: True,
                   what: str = "output", ext: str = ".mp4") -> Path:
    """Decide the output path and refuse the dangerous ones before any work is done. ``what``: how the messages
    name it (the video "output", the "JSON file", the "review page"), ``ext``: the extension they suggest."""
    if output is None:
        dst = default_output(src, None, fits)
    else:
        dst = Path(output)
        if dst.is_dir():
            dst = default_output(src, dst, fits)
    if not dst.suffix:
        name = "name the container" if what == "output" else "name it"
        raise OutputError(f"{what} {dst} has no extension; {name}, e.g. {dst}{ext}")
    if dst.exists() or dst.is_symlink():
        try:
            same = dst.samefile(src)
        except OSError:
            same = False
        if same or dst.resolve() == src.resolve():
            raise OutputError(f"{what} {dst} is the input; trt_anon never overwrites its input")
        if dst.is_dir():
            raise OutputError(f"{what} {dst} is a folder")
        if not overwrite:
            raise OutputError(f"{what} {dst} exists; pass --overwrite to replace it")
    parent = dst.parent if str(dst.parent) else Path(".")
    if not parent.is_dir():
        blocking = next((p for p in (parent, *parent.parents) if p.exists() or p.is_symlink()), None)
        if blocking is not None and not blocking.is_dir():  # notes.mp4/out.mp4, notes.mp4 a file
            raise OutputError(f"{what} {dst}: {blocking} is a file, not a folder")
        raise OutputError(f"{what} folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} folder {parent} is not writable")
    return dst


@contextlib.contextmanager
def atomic_output(dst: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a unique temporary path beside ``dst``; rename it to ``dst`` only on success.

    On any exception, Ctrl-C included, the temporary file is removed and ``dst`` is untouched.
    Unique names mean two processes writing the same output never write the same file.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=f".part{dst.suffix}", dir=dst.parent or ".")
    except OSError as exc:
        raise OutputError(f"cannot write in {dst.parent or '.'}: {exc.strerror}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if dst.exists() and not overwrite:
            raise OutputError(f"output {dst} appeared while we were writing; not replacing it")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp_path, 0o666 & ~mask)  # mkstemp made it 0600; give it a normal file's mode
        try:
            os.replace(tmp_path, dst)
        except OSError as exc:
            raise OutputError(f"cannot move the finished output to {dst}: {exc.strerror}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise
