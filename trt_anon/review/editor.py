"""The review page's editor: one card per person (their tracks grouped by face, review/people.py; keep visible or
redact, a track split out), regions drawn on the frames, and a button that saves a decisions file for
``--decisions``.

The run's document (``FrameStats.document``: frames with faces and tracks, the report, the audit record) is
embedded gzip-compressed as base64, inert text that no markup can escape from; the script unpacks it with the
browser's DecompressionStream, and on saving writes it back with the tracks' actions and the ``"added"``
regions. Plain DOM, no library, nothing fetched: the page works from ``file://``.
"""
from __future__ import annotations

import base64
import html

import cv2
import numpy as np

from .stats import Card

CROP_HEIGHT = 112   # pixels, each shot on a track's card


def crop(rgb: np.ndarray, quarter_turns: int, box: list[float], height: int = CROP_HEIGHT) -> bytes | None:
    """A JPEG of the face ``box`` with some of its surroundings, upright, ``height`` pixels high."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * 1.6 + 8
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    h, w = rgb.shape[:2]
    a, b = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    c, d = min(w, int(np.ceil(cx + side / 2))), min(h, int(np.ceil(cy + side / 2)))
    if c <= a or d <= b:
        return None
    img = np.ascontiguousarray(np.rot90(rgb[b:d, a:c], quarter_turns))
    s = height / img.shape[0]
    img = cv2.resize(img, (max(1, round(img.shape[1] * s)), height),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return jpeg(img)


def jpeg(rgb: np.ndarray, quality: int = 80) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV's JPEG writer does not fail on uint8 RGB
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def _img(data: bytes, cls: str, alt: str) -> str:
    src = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="{src}">'


def render_cards(people: list[list[Card]], originals: bool, grouped: bool = False) -> list[str]:
    """The people section: a card per person (``people``: the tracks of each, review/people.py) with each track's
    shots, a switch for the person (redact / keep visible; kept where matched, for a --keep-face run's match)
    and, on a card of several tracks, a button that splits a track out into a card of its own."""
    n = sum(len(p) for p in people)
    how = ("tracks grouped by their faces, only where they surely are one person (when unsure, two cards); "
           "<b>split out</b> a track that is someone else" if grouped else "one card per track (install "
           "<code>trt_anon[consent]</code> to group the tracks of one person)")
    out = [f'<h2>People followed (<span id="track-count">{n}</span> tracks, <span id="person-count">'
           f'{len(people)}</span> cards)</h2>',
           '<p class="note">Each face the tracker followed through the video, with its first, largest and last '
           "frame" + (" (input above, unredacted; output below)" if originals else " as published") + f"; {how}. "
           "<b>Keep visible</b> leaves that person unredacted in every frame; everyone else stays redacted.</p>",
           '<div class="tracks">']
    for group in people:
        ids = [c.track["id"] for c in group]
        actions = {c.track["action"] for c in group}
        action = actions.pop() if len(actions) == 1 else "redact"   # (grouped with one action: people.group)
        matched = action == "matched"
        out.append(f'<div class="track" id="track-{ids[0]}" data-track="{" ".join(map(str, ids))}" '
                   f'data-action="{action}">')
        person = next((c.track["person"] for c in group if c.track.get("person")), None)
        if len(group) > 1 or person:
            out.append(f'<p class="who"><b>{html.escape(person or "one person")}</b> · {len(group)} track'
                       f'{"s" if len(group) > 1 else ""}</p>')
        for card in group:
            out += _track(card, originals, len(group) > 1)
        buttons = [("redact", "redact"), ("keep", "keep visible")] + ([("matched", "kept where matched")]
                                                                      if matched else [])
        out.append('<div class="switch">' + "".join(
            f'<button type="button" data-act="{act}" aria-pressed="{str(action == act).lower()}">{label}</button>'
            for act, label in buttons) + "</div></div>")
    out.append("</div>")
    return out


def _track(card: Card, originals: bool, member: bool) -> list[str]:
    """One track's shots and numbers on its person's card (``member``: one of several, which can be split out)."""
    t = card.track
    out = [f'<div class="member" data-member="{t["id"]}">'] if member else []
    rows = (("input_jpeg", "crop input"), ("output_jpeg", "crop output")) if originals else \
        (("output_jpeg", "crop output"),)
    for attr, cls in rows:
        shots = [_img(getattr(s, attr), cls, f"track {t['id']} at frame {s.frame} ({s.label})")
                 + f"<small>{s.label} · {s.frame}</small>" for s in card.shots if getattr(s, attr)]
        if shots:
            out.append('<div class="shots">' + "".join(f"<span>{s}</span>" for s in shots) + "</div>")
    if not card.shots:
        out.append('<p class="note">no pictures: only the longest tracks have them</p>')
    score = f"lowest score {t['lowest_score']:.2f}" if t["lowest_score"] < 1 else "no detection score"
    match = f" · matched {html.escape(t['person'])} ({t['distance']:.2f})" if t.get("action") == "matched" else ""
    split = f' <button type="button" class="split" data-split="{t["id"]}">split out</button>' if member else ""
    out.append(f'<p><b>track {t["id"]}</b> · frames {t["first"]}–{t["last"]} ({t["frames"]} frames) · {score}'
               f' · detected face up to {t["largest"]:.0f} px wide{match}{split}</p>')
    if member:
        out.append("</div>")
    return out


def render_regions() -> list[str]:
    """The added regions' panel (filled by the script)."""
    return ['<h2>Added regions (<span id="region-count">0</span>)</h2>',
            '<p class="note">For what the detector missed (a face, a name badge, a plate): <b>drag on a frame '
            "below</b> to draw a box. It covers that frame and every frame to the thumbnails on either side (its "
            "label says which; set other frames in the list). A second box, while a region is selected, asks "
            "whether it is a key frame of that region or a new one: the box moves in a straight line between key "
            "frames and stays still before the first and after the last. After a save, or once a region's frames "
            "are set, the next box starts a new region (so does <b>New region</b>, in the bar below). Coordinates "
            "are saved in the video's own pixels.</p>",
            '<ol id="regions"></ol>']


def render_savebar(document: bytes, save_name: str, command: str, saved_in: str) -> list[str]:
    """The save button, what it will save, the command that uses it (``saved_in``: the placeholder it has for
    the browser's download folder, which a page cannot know), and the embedded document."""
    e = html.escape
    return [f'<div id="savebar"><button type="button" id="save" data-name="{e(save_name)}">Save decisions</button> '
            '<button type="button" id="new-region">New region</button> <span id="summary"></span> · '
            '<span id="draw-hint">the next box drawn starts a new region</span> <b id="save-status"></b><br>'
            f'<small>then: <code id="command">{e(command)}</code> (<code>{e(saved_in)}</code>: the folder your '
            "browser saved the file in, often ~/Downloads)</small></div>",
            '<script type="application/octet-stream" id="document">'
            + base64.b64encode(document).decode("ascii") + "</script>"]


CSS = """
.tracks{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:10px}
.track{background:#fff;box-shadow:0 1px 2px #0002;padding:6px;border-left:5px solid #888}
.track[data-action=keep],.track[data-action=matched]{border-left-color:#1a7f37;background:#effaf1}
.member{border-top:1px dashed #ccc;padding-top:4px}.member:first-of-type{border-top:0}.who{font-size:14px}
button.split{font-size:11px;margin-left:6px}
.track p{margin:4px 2px;font-size:13px}.shots{display:flex;gap:4px;overflow-x:auto}
.shots span{display:flex;flex-direction:column;font-size:11px;color:#555}.shots img{height:84px;width:auto}
.switch button{font:inherit;font-size:13px;padding:3px 10px;border:1px solid #888;background:#fff;cursor:pointer}
.switch button[aria-pressed=true]{background:#333;color:#fff}
.track[data-action=keep] .switch button[aria-pressed=true]{background:#1a7f37;border-color:#1a7f37}
.draw{position:relative;cursor:crosshair;touch-action:none;user-select:none}
.draw .box{position:absolute;box-sizing:border-box;border:2px dashed #d00;pointer-events:none}
.draw .box.key{border-style:solid}.draw .box.current{border-color:#f0f;box-shadow:0 0 0 1px #fff}
.draw .box.rubber{border:2px solid #f0f}.draw .box.face{border:0}
.draw .ask{position:absolute;left:4px;top:4px;z-index:2;background:#222e;color:#fff;padding:4px 6px;font-size:12px;
cursor:default}.draw .ask button{font:inherit;margin:2px}
.draw .box span{position:absolute;left:0;top:-17px;font-size:11px;background:#d00;color:#fff;padding:0 3px;
white-space:nowrap}.draw .box.face span{background:#333a;top:0}.draw .box.face.kept span{background:#1a7f37}
#regions li{background:#fff;margin:4px 0;padding:6px;box-shadow:0 1px 2px #0002;cursor:pointer}
#regions li.current{outline:2px solid #f0f}#regions input[type=number]{width:6em}
#regions button.key{font-size:12px;margin:0 2px}
#savebar{position:fixed;left:0;right:0;bottom:0;background:#222;color:#fff;padding:8px 24px;z-index:9}
#savebar button{font:inherit;padding:4px 14px}#save{font-weight:700}
#save-status{margin-left:1em}#savebar code{color:#ffd;word-break:break-all}
body{padding-bottom:84px}
"""

# The editor. Boxes are kept in the stored frame's pixels (what --decisions reads); thumbnails show the frame
# as a player does, turned by data-turns quarter turns counter-clockwise (np.rot90), hence toShown/toStored.
SCRIPT = r"""
(function () {
  const body = document.body, W = +body.dataset.width, H = +body.dataset.height;
  const turns = +body.dataset.turns, last = +body.dataset.frames - 1;
  const SW = turns % 2 ? H : W, SH = turns % 2 ? W : H;   // the frame as shown
  const regions = [];   // {keys: [{frame, box}] sorted by frame, start, end}
  let current = null, dirty = false, doc = null, pending = null;
  const thumbs = [...new Set([...document.querySelectorAll('.draw')].map((p) => +p.dataset.frame))]
    .sort((a, b) => a - b);
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const toStored = (x, y) => [[x, y], [W - y, x], [W - x, H - y], [y, H - x]][turns];
  const toShown = (x, y) => [[x, y], [y, W - x], [W - x, H - y], [H - y, x]][turns];
  function convert(box, f) {
    const [a, b] = f(box[0], box[1]), [c, d] = f(box[2], box[3]);
    return [Math.min(a, c), Math.min(b, d), Math.max(a, c), Math.max(b, d)];
  }

  function boxAt(r, f) {   // as trt_anon.decisions interpolates the saved keys
    if (f < r.start || f > r.end) return null;
    const k = r.keys;
    if (f <= k[0].frame) return k[0].box;
    for (let i = 1; i < k.length; i++) {
      if (f <= k[i].frame) {
        const a = (f - k[i - 1].frame) / (k[i].frame - k[i - 1].frame);
        return k[i - 1].box.map((v, j) => v + a * (k[i].box[j] - v));
      }
    }
    return k[k.length - 1].box;
  }
  function saved(r) {   // the region for the file: its keys, held still out to its start and end
    const k = r.keys.map((x) => ({frame: x.frame, box: x.box.map((v) => Math.round(v * 10) / 10)}));
    if (r.start < k[0].frame) k.unshift({frame: r.start, box: k[0].box});
    if (r.end > k[k.length - 1].frame) k.push({frame: r.end, box: k[k.length - 1].box});
    return {keys: k};
  }

  function placed(pad, box, cls, label) {   // a box in stored pixels, drawn over a thumbnail
    const [x1, y1, x2, y2] = convert(box, toShown), d = el('div', 'box ' + cls);
    Object.assign(d.style, {left: 100 * x1 / SW + '%', top: 100 * y1 / SH + '%',
                            width: 100 * (x2 - x1) / SW + '%', height: 100 * (y2 - y1) / SH + '%'});
    if (label) d.appendChild(el('span', '', label));
    pad.appendChild(d);
    return d;
  }
  function actions() {   // each track's action: its person's card's
    const a = {};
    for (const c of document.querySelectorAll('.track')) {
      for (const t of c.dataset.track.split(' ')) a[t] = c.dataset.action;
    }
    return a;
  }
  function persons() {   // the tracks on a card of several: their person, the card's first track
    const p = {};
    for (const c of document.querySelectorAll('.track')) {
      const ids = c.dataset.track.split(' ');
      if (ids.length > 1) for (const t of ids) p[t] = +ids[0];
    }
    return p;
  }
  function redraw() {
    const act = actions();
    for (const pad of document.querySelectorAll('.draw')) {
      for (const b of pad.querySelectorAll('.box:not(.pending)')) b.remove();
      const f = +pad.dataset.frame;
      for (const face of (doc && doc.frames[f] ? doc.frames[f].faces : [])) {
        if (face.track === undefined) continue;
        const kept = act[face.track] === 'keep' || (act[face.track] === 'matched' && face.kept === true);
        placed(pad, face.box, 'face' + (kept ? ' kept' : ''), 'track ' + face.track + (kept ? ' kept' : ''));
      }
      regions.forEach((r, i) => {
        const box = boxAt(r, f);
        if (!box) return;
        const key = r.keys.some((k) => k.frame === f);
        placed(pad, box, (key ? 'key' : '') + (r === current ? ' current' : ''),
               'region ' + (i + 1) + (key ? ' · frames ' + r.start + '–' + r.end : ''));
      });
    }
    const kept = Object.values(act).filter((a) => a !== 'redact').length;
    $('summary').textContent = kept + ' of ' + Object.keys(act).length + ' tracks kept visible · ' +
      regions.length + ' region' + (regions.length === 1 ? '' : 's') + ' added' + (dirty ? ' (not saved)' : '');
    $('region-count').textContent = regions.length;
    $('draw-hint').textContent = current ? 'the next box drawn asks: a key frame of region ' +
      (regions.indexOf(current) + 1) + ', or a new region' : 'the next box drawn starts a new region';
  }

  function list() {   // the regions' panel
    const ol = $('regions');
    ol.textContent = '';
    regions.forEach((r, i) => {
      const li = el('li', r === current ? 'current' : '');
      li.appendChild(el('b', '', 'region ' + (i + 1) + ' '));
      li.appendChild(document.createTextNode('frames '));
      for (const end of ['start', 'end']) {
        const input = el('input', end);
        Object.assign(input, {type: 'number', min: end === 'start' ? 0 : r.keys[r.keys.length - 1].frame,
                              max: end === 'start' ? r.keys[0].frame : last, value: r[end]});
        input.onchange = () => {
          const v = Math.round(+input.value);
          r[end] = Math.min(+input.max, Math.max(+input.min, isNaN(v) ? r[end] : v));
          current = null;   // its frames set: the region is done, the next box starts another
          changed();
        };
        li.appendChild(input);
        if (end === 'start') li.appendChild(document.createTextNode(' to '));
      }
      li.appendChild(document.createTextNode(' · key frames: '));
      for (const k of r.keys) {
        const b = el('button', 'key', k.frame + ' ×');
        b.type = 'button';
        b.title = 'remove this key frame';
        b.onclick = (ev) => {
          ev.stopPropagation();
          r.keys.splice(r.keys.indexOf(k), 1);
          if (!r.keys.length) remove(r);   // the span still holds the keys left
          changed();
        };
        li.appendChild(b);
      }
      const del = el('button', 'delete', 'delete region');
      del.type = 'button';
      del.onclick = (ev) => { ev.stopPropagation(); remove(r); changed(); };
      li.appendChild(del);
      li.onclick = (ev) => { if (ev.target.tagName !== 'INPUT') { current = r; list(); redraw(); } };
      ol.appendChild(li);
    });
  }
  function remove(r) {
    regions.splice(regions.indexOf(r), 1);
    if (current === r) current = null;
  }
  function changed() { dirty = true; list(); redraw(); }

  function around(frame) {   // the thumbnails on either side (the video's ends where there is none)
    const before = thumbs.filter((f) => f < frame), after = thumbs.filter((f) => f > frame);
    return [before.length ? before[before.length - 1] : 0, after.length ? after[0] : last];
  }
  function addKey(region, frame, box) {   // a box drawn: a key frame of ``region``, or (null) a new region
    if (!region) {
      region = {keys: [], start: frame, end: frame};
      regions.push(region);
    }
    current = region;
    const k = region.keys;
    const same = k.findIndex((x) => x.frame === frame);
    if (same >= 0) k.splice(same, 1);
    k.push({frame, box});
    k.sort((a, b) => a.frame - b.frame);
    // what the thumbnails do not show is covered: from the one before to the one after (each visible there)
    const [from, to] = around(frame);
    region.start = Math.min(region.start, from, k[0].frame);
    region.end = Math.max(region.end, to, k[k.length - 1].frame);
    changed();
  }
  function cancel() {   // the box waiting for an answer, and its question
    for (const e of pending || []) e.remove();
    pending = null;
  }
  function ask(pad, frame, box) {   // a region is selected: a key frame of it, or a new region? (never silently)
    cancel();
    const n = regions.indexOf(current) + 1, region = current;
    const again = region.keys.some((x) => x.frame === frame);
    const q = el('div', 'ask', 'this box: ');
    pending = [q, placed(pad, box, 'rubber pending')];
    const choices = [[again ? 'replaces region ' + n + "'s box here" : 'key frame of region ' + n, 'key', region],
                     ['new region', 'new', null], ['×', 'cancel', undefined]];
    for (const [text, cls, target] of choices) {
      const b = el('button', cls, text);
      b.type = 'button';
      b.onclick = (ev) => {
        ev.stopPropagation();
        cancel();
        if (target !== undefined) addKey(target, frame, box); else redraw();
      };
      q.appendChild(b);
    }
    pad.appendChild(q);
  }

  for (const pad of document.querySelectorAll('.draw')) {
    let from = null, rubber = null;
    const at = (ev) => {   // the pointer in the shown frame's pixels
      const r = pad.getBoundingClientRect();
      const fx = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
      const fy = Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height));
      return [fx * SW, fy * SH];
    };
    const shown = (p, q) => [Math.min(p[0], q[0]), Math.min(p[1], q[1]), Math.max(p[0], q[0]), Math.max(p[1], q[1])];
    pad.addEventListener('pointerdown', (ev) => {
      if (!W || ev.button !== 0 || ev.target.closest('.ask')) return;
      cancel();
      ev.preventDefault();
      pad.setPointerCapture(ev.pointerId);
      from = at(ev);
      rubber = placed(pad, convert(shown(from, from), toStored), 'rubber');
    });
    pad.addEventListener('pointermove', (ev) => {
      if (!from) return;
      const [x1, y1, x2, y2] = shown(from, at(ev));
      Object.assign(rubber.style, {left: 100 * x1 / SW + '%', top: 100 * y1 / SH + '%',
                                   width: 100 * (x2 - x1) / SW + '%', height: 100 * (y2 - y1) / SH + '%'});
    });
    pad.addEventListener('pointerup', (ev) => {
      if (!from) return;
      const box = shown(from, at(ev)), r = pad.getBoundingClientRect();
      from = null;
      rubber.remove();
      if ((box[2] - box[0]) * r.width / SW < 4 || (box[3] - box[1]) * r.height / SH < 4) return;   // a click
      const frame = +pad.dataset.frame, stored = convert(box, toStored);
      if (current) ask(pad, frame, stored); else addKey(null, frame, stored);
    });
  }
  $('new-region').onclick = () => { cancel(); current = null; list(); redraw(); };
  document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape' && pending) { cancel(); redraw(); } });
  function wire(card) {   // a card's switch: the action of every track on it
    for (const b of card.querySelectorAll('.switch button')) {
      b.onclick = () => {
        card.dataset.action = b.dataset.act;
        for (const o of card.querySelectorAll('.switch button')) o.setAttribute('aria-pressed', o === b);
        dirty = true;
        redraw();
      };
    }
    for (const b of card.querySelectorAll('button.split')) b.onclick = () => split(card, b.dataset.split);
  }
  function split(card, track) {   // a track of a person's card is someone else: a card of its own, redacted
    const member = card.querySelector('.member[data-member="' + track + '"]');
    const ids = card.dataset.track.split(' ').filter((t) => t !== track);
    const alone = el('div', 'track');
    alone.id = 'track-' + track;
    alone.dataset.track = track;
    alone.dataset.action = 'redact';
    member.querySelector('button.split').remove();
    while (member.firstChild) alone.appendChild(member.firstChild);
    member.remove();
    const sw = card.querySelector('.switch').cloneNode(true);
    for (const o of sw.querySelectorAll('button')) o.setAttribute('aria-pressed', o.dataset.act === 'redact');
    alone.appendChild(sw);
    card.dataset.track = ids.join(' ');
    card.id = 'track-' + ids[0];
    if (ids.length === 1) {   // the one track left: its card as any single track's
      const last = card.querySelector('.member');
      last.querySelector('button.split').remove();
      while (last.firstChild) card.insertBefore(last.firstChild, last);
      last.remove();
    }
    card.after(alone);
    wire(alone);
    $('person-count').textContent = document.querySelectorAll('.track').length;
    dirty = true;
    redraw();
  }
  for (const card of document.querySelectorAll('.track')) wire(card);

  async function load() {   // the run's document, embedded gzip-compressed
    const bytes = Uint8Array.from(atob($('document').textContent.trim()), (c) => c.charCodeAt(0));
    const text = new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'))).text();
    doc = JSON.parse(await text);
    for (const a of doc.added || []) {
      const keys = a.keys.slice().sort((p, q) => p.frame - q.frame);
      regions.push({keys, start: keys[0].frame, end: keys[keys.length - 1].frame});
    }
    list();
    redraw();
    body.dataset.editor = 'ready';
    return doc;
  }
  const ready = load().catch((err) => {
    $('save-status').textContent = 'this browser cannot read the run embedded in the page (' + err + ')';
    body.dataset.editor = 'failed';
    throw err;
  });

  $('save').onclick = async () => {
    const d = await ready, act = actions(), who = persons();
    const out = Object.assign({}, d, {
      tracks: d.tracks.map((t) => Object.assign({}, t, {action: act[t.id] || t.action},
                                                 who[t.id] === undefined ? {} : {person_card: who[t.id]})),
      added: regions.map(saved)});
    const a = el('a');
    a.href = URL.createObjectURL(new Blob([JSON.stringify(out)], {type: 'application/json'}));
    a.download = $('save').dataset.name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    dirty = false;
    current = null;   // saved: the next box starts a new region
    $('save-status').textContent = 'saved as ' + a.download + ' in your browser\'s download folder';
    list();
    redraw();
  };
  window.addEventListener('beforeunload', (ev) => { if (dirty) { ev.preventDefault(); ev.returnValue = ''; } });
  redraw();
})();
"""
