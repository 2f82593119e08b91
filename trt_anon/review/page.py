"""The page itself: the timeline chart (matplotlib), thumbnails with the boxes outlined, the editor's cards
and panels (``editor``), one HTML file.

Images are embedded as data URIs (JPEG thumbnails, PNG chart), so the page is one file that can be
mailed or archived with the video. A few lines of script record each image's natural size in the
DOM after loading; the browser test reads them back (the page reads the same without script).
"""
from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..detect.detections import FILLED, HELD, HIT
from ..report import Report
from . import editor
from .stats import PICKS, Card, Pick

THUMB_WIDTH = 640       # pixels across (the video's own width when smaller)
JPEG_QUALITY = 80
CHART_BINS = 2400       # longer videos are drawn per bin: the busiest frame of each bin, the lowest score
KIND_COLOURS = {HIT: (30, 200, 30), HELD: (255, 150, 0), FILLED: (40, 130, 255)}   # RGB
KIND_NAMES = {HIT: "detected", HELD: "held / between looks", FILLED: "back-filled"}
PICK_TEXT = {"even": "evenly spaced", "start": "track starts (a box appears)", "end": "track ends (a box's last frame)",
             "low": "with the lowest detection scores", "most": "with the most faces",
             "large": "with the largest redacted boxes"}


@dataclass
class Thumb:
    """One card: a frame, why it was chosen, its boxes, and the JPEG(s) to show."""

    pick: Pick
    time: float | None = None
    output_jpeg: bytes | None = None
    input_jpeg: bytes | None = None
    kinds: list[int] = field(default_factory=list)


def thumbnail(rgb: np.ndarray, quarter_turns: int, boxes: np.ndarray, kinds: np.ndarray,
              width: int = THUMB_WIDTH) -> bytes:
    """A JPEG of the frame at most ``width`` across as displayed, each box outlined in its kind's colour."""
    h, w = rgb.shape[:2]
    shown_w = h if quarter_turns % 2 else w
    s = min(1.0, width / shown_w)
    img = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) \
        if s < 1 else rgb.copy()
    for (x1, y1, x2, y2), k in zip(boxes * s, kinds):
        corner = (max(int(x1), int(np.ceil(x2)) - 1), max(int(y1), int(np.ceil(y2)) - 1))
        cv2.rectangle(img, (int(x1), int(y1)), corner, KIND_COLOURS.get(int(k), KIND_COLOURS[HIT]), 2)
    if quarter_turns:
        img = np.ascontiguousarray(np.rot90(img, quarter_turns))
    return editor.jpeg(img, JPEG_QUALITY)


def _binned(s: dict[str, np.ndarray], bins: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Frame positions and series, at most ``bins`` long: per bin the busiest frame's split, the lowest score."""
    n = len(s["hit"])
    if n <= bins:
        return np.arange(n), s
    edges = np.linspace(0, n, bins + 1).astype(int)
    total = s["hit"] + s["held"] + s["filled"]
    busiest = np.array([a + int(np.argmax(total[a:b])) for a, b in zip(edges[:-1], edges[1:])])
    low = np.array([np.nan if np.isnan(s["low"][a:b]).all() else np.nanmin(s["low"][a:b])
                    for a, b in zip(edges[:-1], edges[1:])])
    return edges[:-1], {**{k: s[k][busiest] for k in ("hit", "held", "filled")}, "low": low}


def chart_png(series: dict[str, np.ndarray], picks: list[int], threshold: float | None = None,
              fps: float | None = None) -> bytes:
    """The timeline: faces per frame (stacked by kind) and the lowest detection score per frame.
    With ``fps`` the frame axis also reads as time (m:ss)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    x, s = _binned(series, CHART_BINS)
    n = len(series["hit"])
    fig = Figure(figsize=(12, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    colours = [np.array(KIND_COLOURS[k]) / 255 for k in (HIT, HELD, FILLED)]
    xs = np.append(x, n)  # steps: frame i covers [i, i+1)
    ys = [np.append(s[k], s[k][-1:]) for k in ("hit", "held", "filled")]
    top.stackplot(xs, *ys, step="post", colors=colours, labels=[KIND_NAMES[k] for k in (HIT, HELD, FILLED)])
    top.set_ylabel("faces per frame")
    peak = int(max(1, (s["hit"] + s["held"] + s["filled"]).max(initial=0)))
    top.set_ylim(0, peak * 1.15 + 0.2)
    top.yaxis.get_major_locator().set_params(integer=True)
    if picks:
        top.scatter(np.asarray(picks) + 0.5, np.full(len(picks), 1.0), marker="v", s=22, color="#444",
                    transform=top.get_xaxis_transform(), clip_on=False, zorder=3, label="thumbnail below")
    top.legend(loc="upper left", ncols=4, fontsize=9, frameon=False, bbox_to_anchor=(0, 1.16))
    top.grid(axis="y", alpha=0.3)
    bottom.scatter(x + 0.5, s["low"], s=6, color=colours[0])
    if threshold is not None:
        bottom.axhline(threshold, color="#c00", lw=1, ls="--")
        bottom.text(1.0, threshold, f" threshold {threshold:g}", color="#c00", fontsize=8, va="center",
                    transform=bottom.get_yaxis_transform())
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("lowest score")
    bottom.set_xlabel("frame" + (f" (each point: the busiest of ~{n / len(x):.0f} frames)" if len(x) < n else ""))
    bottom.set_xlim(0, max(n, 1))
    if fps:
        short = n / fps < 60
        when = (lambda v: f"{v / fps:.1f} s") if short else (lambda v: _clock(v / fps)[:-3])
        bottom.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}\n{when(v)}"))
        bottom.set_xlabel(bottom.get_xlabel().replace("frame", "frame / time" + ("" if short else " (m:ss)"), 1))
    bottom.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _clock(t: float | None) -> str:
    if t is None:
        return ""
    m, s = divmod(max(t, 0.0), 60)
    return f"{int(m)}:{s:05.2f}"


CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;background:#f4f4f6}
main{max-width:1400px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px;word-break:break-all}h2{font-size:18px;margin:28px 0 8px}
.note{margin:6px 0 0;color:#245;background:#e3eefc;border-left:4px solid #3a78d8;padding:8px 12px}
.danger{position:sticky;top:0;z-index:9;background:#b00020;color:#fff;font-size:19px;font-weight:700;
  padding:14px 24px;text-align:center;box-shadow:0 2px 6px #0005}
table.report{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002}
table.report th{text-align:left;font-weight:600;padding:5px 14px;color:#555;white-space:nowrap;vertical-align:top}
table.report td{padding:5px 14px;word-break:break-all}
table.report tr+tr>*{border-top:1px solid #eee}
ul.warnings{background:#fff4e0;border-left:4px solid #e08a00;margin:0;padding:8px 12px 8px 32px}
p.ok{color:#2a6}
#chart{max-width:100%;height:auto;background:#fff;box-shadow:0 1px 2px #0002}
.legend span{display:inline-block;margin-right:16px}.legend i{display:inline-block;width:14px;height:14px;
  vertical-align:-2px;margin-right:5px;border:2px solid}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:14px}
.grid.pairs{grid-template-columns:repeat(auto-fill,minmax(540px,1fr))}
figure{margin:0;background:#fff;box-shadow:0 1px 2px #0002;padding:6px}
figure .imgs{display:flex;gap:6px}figure .imgs>div{flex:1;min-width:0}
figure img{display:block;width:100%;height:auto}
figure .tag{font-size:12px;color:#555}figure .tag.raw{color:#b00020;font-weight:700}
figcaption{font-size:13px;padding:5px 2px 0}figcaption b{font-variant-numeric:tabular-nums}
.why{color:#555}.missing{color:#b00020}
"""

SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    imgs[i].setAttribute('data-natural', imgs[i].naturalWidth + 'x' + imgs[i].naturalHeight);
    if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;
  }
  document.body.setAttribute('data-images-loaded', ok + '/' + imgs.length);
});
"""


def _report_rows(report: Report, settings: dict[str, str]) -> list[tuple[str, str, str]]:
    """(label, value, element id) for the report table."""
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    return [
        ("input", report.input, "input"), ("output", report.output, "output"),
        ("frames", str(report.frames), "frames"), ("duration", f"{report.duration:.2f} s", "duration"),
        ("run", f"{report.wall:.1f} s, {report.fps:.1f} fps ({seconds})", "run"),
        ("faces", f"{report.faces} detections; {report.frames_with_faces} frames with faces "
                  f"(most in one frame: {report.max_faces}); {report.redacted_boxes} boxes redacted "
                  "(held and back-filled included)", "faces"),
        ("backends", ", ".join(f"{k}: {v}" for k, v in report.backends.items()), "backends"),
        ("settings", ", ".join(f"{k} {v}" for k, v in settings.items()), "settings"),
    ]


@dataclass
class Edit:
    """What the editor needs: the cards, the run's document (gzip), the stored frame's size and turns."""

    cards: list[Card]
    document: bytes
    width: int = 0
    height: int = 0
    turns: int = 0
    people: list[list[Card]] | None = None   # the cards grouped into people (review/people.py); None: not grouped


SAVED_IN = "DOWNLOADS"   # the page cannot know where the browser saves a file: the command names it so


def _command(report: Report, save_name: str) -> str:
    """The command line that renders the input again with the saved file (shell-quoted): the input and output by
    their full paths (it may be run from anywhere), the saved file in the browser's download folder, SAVED_IN."""
    import shlex
    out = Path(report.output).resolve()
    fixed = out.with_name(out.stem + ".fixed" + out.suffix)
    return (f"trt-anon {shlex.quote(str(Path(report.input).resolve()))} --decisions "
            f"{SAVED_IN}/{shlex.quote(save_name)} -o {shlex.quote(str(fixed))}")


def render(report: Report, thumbs: list[Thumb], chart: bytes, originals: bool, settings: dict[str, str],
           extra_warnings: list[str], edit: Edit) -> str:
    """The whole page as one HTML string."""
    e = html.escape
    name = os.path.basename(report.output)
    save_name = Path(report.output).stem + ".decisions.json"
    out: list[str] = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
                      '<meta name="viewport" content="width=device-width,initial-scale=1">',
                      f"<title>Review: {e(name)}</title><style>{CSS}{editor.CSS}</style></head>",
                      f'<body data-originals="{str(originals).lower()}" data-width="{edit.width}" '
                      f'data-height="{edit.height}" data-turns="{edit.turns}" data-frames="{report.frames}">']
    if originals:
        out.append('<div class="danger" id="originals-warning">This page contains UNREDACTED frames of the input '
                   "(--review-originals): faces are visible. Do not publish it or send it to anyone who may not "
                   "see them.</div>")
    out.append(f"<main><h1>Review: {e(name)}</h1>")
    if originals:
        out.append('<p class="note">Each card shows the input frame (unredacted, left) beside the same frame of '
                   "the output (right), both with the redacted boxes outlined.</p>")
    else:
        out.append('<p class="note" id="privacy">Only frames of the anonymized output are shown (decoded from the '
                   "written file, as it will be published): this page holds no pixel of the input that the "
                   "output does not.</p>")
    out.append('<h2>Report</h2><table class="report">')
    for label, value, ident in _report_rows(report, settings):
        out.append(f'<tr><th>{e(label)}</th><td id="{ident}">{e(value)}</td></tr>')
    out.append("</table>")
    warnings = list(report.warnings) + list(extra_warnings)
    out.append(f'<h2>Warnings (<span id="warning-count">{len(warnings)}</span>)</h2>')
    if warnings:
        out.append('<ul class="warnings" id="warnings">' + "".join(f"<li>{e(w)}</li>" for w in warnings) + "</ul>")
    else:
        out.append('<p class="ok" id="warnings">None.</p>')
    out += editor.render_savebar(edit.document, save_name, _command(report, save_name), SAVED_IN)
    out.append("<h2>Timeline</h2>")
    out.append('<img id="chart" alt="faces per frame and lowest detection score per frame" '
               f'src="{_uri(chart, "image/png")}">')
    out += editor.render_cards(edit.people or [[c] for c in edit.cards], originals, edit.people is not None)
    out += editor.render_regions()
    out.append(f'<h2>Frames to check (<span id="thumb-count">{len(thumbs)}</span>)</h2>')
    got = {k: sum(k in t.pick.keys for t in thumbs) for k in PICKS}
    out.append('<p id="choice">Chosen from the whole video: '
               + "; ".join(f"{got[k]} of up to {n} {PICK_TEXT[k]}" for k, n in PICKS.items())
               + f". At most {sum(PICKS.values())} in all; frames far apart for each reason; a frame chosen for "
               "several reasons shows once, its caption says why.</p>")
    out.append('<p class="legend">' + "".join(
        f'<span><i style="border-color:rgb{KIND_COLOURS[k]}"></i>{KIND_NAMES[k]}</span>' for k in (HIT, HELD, FILLED))
        + "<span>outlines: the rectangles redacted (every grid cell they touch is redacted)</span></p>")
    out.append(f'<div class="grid{" pairs" if originals else ""}">')
    for t in thumbs:
        f = t.pick.frame
        kinds = ", ".join(f"{t.kinds.count(k)} {KIND_NAMES[k]}" for k in (HIT, HELD, FILLED) if t.kinds.count(k))
        out.append(f'<figure class="thumb" id="frame-{f}" data-frame="{f}">')
        if t.output_jpeg is None:
            out.append('<p class="missing">This frame could not be decoded from the output.</p>')
        elif originals:
            raw = (f'<div class="draw" data-frame="{f}"><img class="input" alt="input frame {f}" '
                   f'src="{_uri(t.input_jpeg, "image/jpeg")}"></div>'
                   if t.input_jpeg else '<p class="missing">input frame not found</p>')
            out.append(f'<div class="imgs"><div><div class="tag raw">input (unredacted)</div>{raw}</div>'
                       f'<div><div class="tag">output</div><div class="draw" data-frame="{f}"><img class="output" '
                       f'alt="output frame {f}" src="{_uri(t.output_jpeg, "image/jpeg")}"></div></div></div>')
        else:
            out.append(f'<div class="draw" data-frame="{f}"><img class="output" alt="output frame {f}" '
                       f'src="{_uri(t.output_jpeg, "image/jpeg")}"></div>')
        boxes = f"{len(t.kinds)} box{'es' if len(t.kinds) != 1 else ''}" + (f" ({kinds})" if kinds else "")
        out.append(f"<figcaption><b>frame {f}</b> {_clock(t.time)} · {boxes}<br>"
                   f'<span class="why">{e("; ".join(t.pick.reasons))}</span></figcaption></figure>')
    out.append("</div></main>")
    out.append(f"<script>{SCRIPT}{editor.SCRIPT}</script></body></html>")
    return "\n".join(out) + "\n"


def render_index(rows: list[dict], originals: bool) -> str:
    """The index of a folder run: totals and one line per file (a failed file says why)."""
    e = html.escape
    done = [r for r in rows if r.get("report") is not None]
    frames = sum(r["report"].frames for r in done)
    faces = sum(r["report"].faces for r in done)
    warns = sum(len(r["report"].warnings) for r in done)
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>Review: {len(rows)} files</title><style>{CSS}</style></head><body>"]
    if originals:
        out.append('<div class="danger">The pages linked here contain UNREDACTED input frames '
                   "(--review-originals). Do not publish them.</div>")
    out.append(f"<main><h1>Review: {len(rows)} files</h1>")
    out.append(f'<p id="totals">{len(done)} of {len(rows)} anonymized · <span id="total-frames">{frames}</span> '
               f'frames · <span id="total-faces">{faces}</span> face detections · '
               f'<span id="total-warnings">{warns}</span> warnings</p>')
    out.append('<table class="report" id="files"><tr><th>file</th><th>frames</th><th>faces</th><th>warnings</th>'
               "<th>review</th></tr>")
    for r in rows:
        rep = r.get("report")
        if rep is None:
            out.append(f'<tr class="failed"><td>{e(r["name"])}</td><td colspan="4" class="missing">failed: '
                       f'{e(r.get("error", ""))}</td></tr>')
            continue
        link = (f'<a href="{e(r["href"])}">review and edit</a>' if r.get("href") else
                f'<span class="missing">no page: {e(r.get("error", ""))}</span>')
        wl = "<br>".join(e(w) for w in rep.warnings)
        out.append(f'<tr><td>{e(r["name"])}</td><td>{rep.frames}</td><td>{rep.faces}</td>'
                   f"<td>{len(rep.warnings)}{'<br><small>' + wl + '</small>' if wl else ''}</td><td>{link}</td></tr>")
    out.append("</table></main></body></html>")
    return "\n".join(out) + "\n"


def write_text(dst: Path, text: str, overwrite: bool) -> None:
    """Write atomically: a temporary file beside ``dst``, renamed when whole (never a partial page)."""
    from ..media import atomic_output
    with atomic_output(dst, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
