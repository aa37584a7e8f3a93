"""The collection map, drawn: a self-contained HTML page (`vitsearch map --out map.html`) and a
picture for the web page's Map tab. Both place every image by its 2-D position, show thumbnails
for a sample, mark the most unusual images, and search from a clicked image."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..search import ImageIndex
from ..search.collection_map import MapPoint
from .thumbnails import make_thumbnail

__all__ = ["MapView", "map_view", "write_map_html", "render_map", "MAP_THUMBS", "MAP_POINTS", "OUTLIERS_SHOWN"]

MAP_THUMBS = 300  # images drawn as thumbnails (an even sample; the rest are dots)
MAP_POINTS = 200_000  # dots drawn at most: the page stays a few MB for any collection
OUTLIERS_SHOWN = 10
NEIGHBOURS = 6
THUMB = 64
_PLACEHOLDER = re.compile(r"__(DATA|TITLE)__")


@dataclass
class MapView:
    points: list[MapPoint]  # the points drawn
    thumbs: set[int]  # ids drawn as thumbnails
    outliers: list[int]  # ids of the most unusual images, most first

    def layout(self, width: int, height: int, margin: int = THUMB // 2 + 4) -> np.ndarray:
        """Pixel positions of the points on a width x height canvas (y grows downwards)."""
        if not self.points:
            return np.zeros((0, 2))
        xy = np.array([(p.x, p.y) for p in self.points], np.float64)
        low, span = xy.min(axis=0), np.maximum(np.ptp(xy, axis=0), 1e-9)
        unit = (xy - low) / span
        return np.stack([margin + unit[:, 0] * (width - 2 * margin),
                         height - margin - unit[:, 1] * (height - 2 * margin)], axis=1)

    def nearest(self, x: float, y: float, width: int, height: int) -> MapPoint | None:
        """The drawn point nearest to a click at (x, y) on the canvas."""
        if not self.points:
            return None
        positions = self.layout(width, height)
        return self.points[int(np.argmin(((positions - (x, y)) ** 2).sum(axis=1)))]


def map_view(index: ImageIndex, method: str = "auto") -> MapView:
    """Every image (an even sample past MAP_POINTS), thumbnails for an even sample of those and
    for the most unusual images."""
    everything = index.map(method)
    outliers = [i for i, _, _ in index.outliers(OUTLIERS_SHOWN)]
    keep = set(outliers)
    every = max(1, -(-len(everything) // MAP_POINTS))
    points = [p for n, p in enumerate(everything) if n % every == 0 or p.id in keep]
    step = max(1, -(-len(points) // MAP_THUMBS))
    return MapView(points, {p.id for p in points[::step]} | keep, outliers)


def render_map(view: MapView, width: int = 1200, height: int = 800) -> Image.Image:
    """The map as a picture: dots, thumbnails for the sample, unusual images framed in red."""
    canvas = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(canvas)
    positions = view.layout(width, height)
    for (x, y), point in zip(positions, view.points, strict=True):
        if point.id not in view.thumbs:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(120, 160, 220))
    for (x, y), point in zip(positions, view.points, strict=True):
        if point.id in view.thumbs:
            thumb = make_thumbnail(point.path, THUMB // 2 * 2 - 16)
            left, top = int(x - thumb.width / 2), int(y - thumb.height / 2)
            canvas.paste(thumb, (left, top))
            colour = (230, 40, 40) if point.id in view.outliers else (200, 200, 200)
            draw.rectangle((left - 1, top - 1, left + thumb.width, top + thumb.height), outline=colour,
                           width=2 if point.id in view.outliers else 1)
    return canvas


def write_map_html(index: ImageIndex, out: str, method: str = "auto") -> int:
    """A page that needs nothing else: zoom (wheel), pan (drag), hover for the file, click for
    the image's nearest neighbours. Returns the number of points."""
    view = map_view(index, method)
    thumbed = [p for p in view.points if p.id in view.thumbs]
    vectors = dict(zip(*index.store.embeddings(np.array([p.id for p in thumbed], np.int64)), strict=True))
    neighbours = {}
    for point in thumbed:
        if point.id in vectors:
            hits = index.search(vectors[point.id], k=NEIGHBOURS + 1)
            neighbours[point.id] = [[h.id, round(h.score, 3)] for h in hits if h.id != point.id][:NEIGHBOURS]
    shown = {p.id: p.path for p in view.points}
    paths = {**shown, **{i: r["path"] for i, r in index.store.records_by_id(
        "path", {i for found in neighbours.values() for i, _ in found} - shown.keys()).items()}}
    wanted = {p.id for p in thumbed} | {i for found in neighbours.values() for i, _ in found}
    data = {
        "points": [[p.id, round(p.x, 5), round(p.y, 5)] for p in view.points],
        "drawn": sorted(view.thumbs),  # drawn as thumbnails on the map
        "names": paths,
        "thumbs": {i: _data_url(paths[i]) for i in sorted(wanted) if i in paths},
        "neighbours": neighbours,
        "outliers": view.outliers,
    }
    page = _fill(_PAGE, {"DATA": _script_json(data),
                         "TITLE": html.escape(f"vitsearch map: {len(view.points)} images in {index.store.dir}")})
    with open(out, "w", encoding="utf-8") as f:
        f.write(page)
    return len(view.points)


def _script_json(data) -> str:
    """JSON that can sit inside a <script> element: with no `<`, `>` or `&` left, no file name can
    close the element or open an HTML comment in it (`<!--<script>` would keep it open)."""
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _fill(page: str, values: dict[str, str]) -> str:
    """The page's __NAME__ placeholders replaced in one pass: what is put in is never read again,
    so a file named __TITLE__.jpg stays a file name."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], page)


def _data_url(path: str) -> str:
    buffer = io.BytesIO()
    make_thumbnail(path, THUMB).save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{margin:0;font:13px sans-serif;background:#18181c;color:#ddd;display:flex;height:100vh}
#map{flex:1;cursor:grab}#side{width:300px;padding:8px;overflow:auto;background:#222}
#side img{width:64px;height:64px;object-fit:cover;margin:2px;cursor:pointer;border:1px solid #555}
.name{word-break:break-all;margin:4px 0}
</style></head><body>
<canvas id="map"></canvas>
<div id="side"><b id="title"></b><p>Wheel: zoom. Drag: pan. Click an image: its nearest neighbours.
Red frames: the most unusual images.</p><div id="picked"></div></div>
<script>
const D = __DATA__;
document.getElementById('title').textContent = document.title;
const canvas = document.getElementById('map'), ctx = canvas.getContext('2d');
const imgs = {};
for (const id of D.drawn) { const i = new Image(); i.src = D.thumbs[id]; i.onload = draw; imgs[id] = i; }
const xs = D.points.map(p => p[1]), ys = D.points.map(p => p[2]);
const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
let zoom = 1, panX = 0, panY = 0, drag = null;
const outliers = new Set(D.outliers);
function place(p) {
  const w = canvas.width - 80, h = canvas.height - 80;
  const x = 40 + (p[1] - minX) / ((maxX - minX) || 1) * w;
  const y = canvas.height - 40 - (p[2] - minY) / ((maxY - minY) || 1) * h;
  return [(x - canvas.width / 2) * zoom + canvas.width / 2 + panX,
          (y - canvas.height / 2) * zoom + canvas.height / 2 + panY];
}
function draw() {
  canvas.width = canvas.clientWidth; canvas.height = canvas.clientHeight;
  ctx.fillStyle = '#18181c'; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = '#78a0dc';
  for (const p of D.points) { if (!(p[0] in imgs)) { const [x, y] = place(p); ctx.fillRect(x - 1.5, y - 1.5, 3, 3); } }
  for (const p of D.points) {
    const i = imgs[p[0]]; if (!i) continue;
    const [x, y] = place(p), s = 48;
    if (i.complete) ctx.drawImage(i, x - s / 2, y - s / 2, s, s);
    ctx.strokeStyle = outliers.has(p[0]) ? '#e62828' : '#888'; ctx.lineWidth = outliers.has(p[0]) ? 3 : 1;
    ctx.strokeRect(x - s / 2, y - s / 2, s, s);
  }
}
function nearest(mx, my) {
  let best = null, dist = Infinity;
  for (const p of D.points) {
    const [x, y] = place(p), d = (x - mx) ** 2 + (y - my) ** 2;
    if (d < dist) { dist = d; best = p; }
  }
  return best;
}
function pick(id) {
  const side = document.getElementById('picked'); side.textContent = '';
  const name = document.createElement('div'); name.className = 'name'; name.textContent = D.names[id] || ('id ' + id);
  side.appendChild(name);
  if (D.thumbs[id]) {
    const i = document.createElement('img'); i.src = D.thumbs[id];
    i.style.width = i.style.height = '128px'; side.appendChild(i);
  }
  const list = document.createElement('div'); list.id = 'neighbours'; side.appendChild(list);
  for (const [nid, score] of (D.neighbours[id] || [])) {
    const i = document.createElement('img'); i.src = D.thumbs[nid] || ''; i.alt = (D.names[nid] || nid) + ' ' + score;
    i.title = (D.names[nid] || nid) + '  ' + score; i.dataset.id = nid; i.onclick = () => pick(nid);
    list.appendChild(i);
  }
}
canvas.addEventListener('wheel', e => { e.preventDefault(); zoom *= e.deltaY < 0 ? 1.2 : 1 / 1.2; draw(); });
canvas.addEventListener('mousedown', e => { drag = [e.offsetX, e.offsetY, panX, panY, false]; });
canvas.addEventListener('mousemove', e => {
  if (drag) {
    panX = drag[2] + e.offsetX - drag[0]; panY = drag[3] + e.offsetY - drag[1]; drag[4] = true; draw(); return;
  }
  const p = nearest(e.offsetX, e.offsetY); canvas.title = p ? (D.names[p[0]] || '') : '';
});
canvas.addEventListener('mouseup', e => {
  const moved = drag && drag[4]; drag = null;
  if (!moved) { const p = nearest(e.offsetX, e.offsetY); if (p) pick(p[0]); }
});
window.addEventListener('resize', draw); draw();
</script></body></html>
"""
