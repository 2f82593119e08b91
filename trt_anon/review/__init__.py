"""A review page to check a result before publishing it (``--review``, ``process(..., review=...)``).

The pipeline hands per-frame numbers to a :class:`FrameStats` while it writes the video; once the
video is complete and renamed into place, :func:`write_review` chooses the frames worth a look,
decodes only those from the written file (and, with ``originals``, from the input), draws the
timeline and writes one self-contained HTML page, atomically. Needs matplotlib (``[review]``).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..errors import ConfigError, OutputError
from ..report import Report
from .editor import crop
from .frames import read_frames, to_rgb
from .page import Edit, Thumb, chart_png, render, render_index, thumbnail, write_text
from .stats import MAX_THUMBS, PICKS, FrameStats, Pick, Shot, choose_frames

__all__ = ["FrameStats", "Pick", "choose_frames", "write_review", "write_index", "require", "review_path",
           "PICKS", "MAX_THUMBS"]

INSTALL_HINT = "pip install 'trt_anon[review]'"


def require() -> None:
    """Fail before any work when the review page cannot be drawn (one line naming the extra)."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        raise ConfigError(f"--review needs matplotlib, which is not installed: {INSTALL_HINT}") from None


def review_path(review: bool | str | os.PathLike, output: Path) -> Path:
    """Where the page goes: ``NAME.anon.review.html`` beside the output (True), the ``.html`` path given, or
    that name in the folder given (an existing one, or a name without extension: created, as ``-o`` folders are)."""
    default = f"{output.stem}.review.html"
    if review is True:
        return output.with_name(default)
    path = Path(review)
    if path.is_dir():
        return path / default
    if path.suffix.lower() in (".html", ".htm"):
        return path
    if path.suffix and not str(review).endswith(("/", os.sep)):
        raise OutputError(f"review page {path}: name an .html file or a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission, /proc
        raise OutputError(f"review page folder {path}: cannot create it ({exc.strerror or exc})") from None
    return path / default


def write_review(report: Report, stats: FrameStats, dst: Path, *, originals: bool = False, overwrite: bool = False,
                 threshold: float | None = None, settings: dict[str, str] | None = None) -> None:
    """Write the review page of a finished run to ``dst`` (atomically; raises on failure)."""
    started = time.perf_counter()
    picks = choose_frames(stats)
    thumbs = {p.frame: Thumb(p, kinds=stats.frame_boxes(p.frame)[1].tolist()) for p in picks}
    edit = Edit(stats.cards(), stats.document())
    shots: dict[int, list[Shot]] = {}
    for card in edit.cards:
        for shot in card.shots:
            shots.setdefault(shot.frame, []).append(shot)
    wanted = sorted(set(thumbs) | set(shots))
    for i, frame in read_frames(Path(report.output), by_index=wanted):
        rgb, turns = to_rgb(frame)
        edit.height, edit.width = rgb.shape[:2]
        edit.turns = turns
        if i in thumbs:
            boxes, kinds = stats.frame_boxes(i)
            thumbs[i].output_jpeg, thumbs[i].time = thumbnail(rgb, turns, boxes, kinds), frame.time
        for shot in shots.get(i, ()):
            shot.output_jpeg = crop(rgb, turns, shot.box)
    if originals:
        by_pts = {stats.pts[f]: f for f in wanted}
        for p, frame in read_frames(Path(report.input), by_pts=list(by_pts)):
            i = by_pts[p]
            rgb, turns = to_rgb(frame)
            if i in thumbs:
                boxes, kinds = stats.frame_boxes(i)
                thumbs[i].input_jpeg = thumbnail(rgb, turns, boxes, kinds)
            for shot in shots.get(i, ()):
                shot.input_jpeg = crop(rgb, turns, shot.box)
    edit.people = _people(report, stats, edit.cards)
    missing = [f for f, t in thumbs.items() if t.output_jpeg is None]
    extra = [f"review: {len(missing)} chosen frame(s) could not be decoded from the output: "
             f"{', '.join(map(str, missing[:10]))}"] if missing else []
    fps = report.frames / report.duration if report.duration > 0 else None
    chart = chart_png(stats.arrays(), list(thumbs), threshold, fps)
    report.seconds["review"] = time.perf_counter() - started
    page = render(report, [thumbs[f] for f in sorted(thumbs)], chart, originals, settings or {}, extra, edit)
    write_text(dst, page, overwrite)


def _people(report: Report, stats: FrameStats, cards) -> list | None:
    """The cards grouped into people (``people.group``), their faces read again from the input; None without
    the ``[consent]`` extra (a card per track)."""
    from . import people
    embedder = people.embedder()
    if embedder is None:
        return None
    wanted = sorted({frame for card in cards for frame, _ in card.faces})
    if not wanted:  # no face to read again: the input is not opened
        return people.group(cards, {})
    by_pts = {stats.pts[f]: f for f in wanted}
    frames = ((by_pts[p], *to_rgb(frame)) for p, frame in read_frames(Path(report.input), by_pts=list(by_pts)))
    return people.group(cards, people.faces(cards, frames, embedder))


def write_index(rows: list[dict], dst: Path, *, originals: bool = False, overwrite: bool = False) -> None:
    """Write ``index.html`` for a run over several files.

    ``rows``: per file ``name``, and ``report`` (None when it failed, with ``error``), ``page`` (the review
    page's path, None when it was not written)."""
    for r in rows:
        page = r.get("page")
        r["href"] = Path(os.path.relpath(page, dst.parent)).as_posix() if page else None
    write_text(dst, render_index(rows, originals), overwrite)
