"""The Gradio page: search by image, refine with filters, review duplicates, see the index.

`build_app(index)` builds the Blocks from an injected ImageIndex; handlers are thin functions
over search/ (and indexer/ for decisions) and return generated thumbnails only, never paths to
originals (a video shows as its matching frame, never as its file). Text that comes from file
names is shown as plain text, never as Markdown or HTML.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from ..indexer.errors import VitsearchError
from ..indexer.imaging.images import inspect_image, read_image_bytes
from ..indexer.locations import is_within
from ..search import ImageIndex
from ..search.explain import heat_map
from ..search.filters import all_of, records_where
from ..search.labels import label_counts
from ..search.region import parse_box
from ..search.video_stills import still_at
from .duplicates_tab import duplicates_tab
from .filters import FORMATS, KINDS, build_where
from .limits import oversized_query
from .map_tab import map_tab
from .quality import quality_facts
from .records import stars
from .refused import refused
from .thumbnails import PREVIEW_SIDE, ThumbnailCache
from .video_hits import at_time, frame_note, is_video, video_facts

__all__ = ["build_app", "SearchActions", "plain_markdown"]

def _uploaded_path(payload) -> str | None:
    """Stands in for the query image's preprocess: the uploaded file's path and nothing else.
    Gradio's own would open the file with Pillow (some formats at full size, and failing with
    messages that name the server's temporary paths) before our loader sees it. An instance
    attribute, not a subclass: Gradio writes a .pyi stub beside any module defining a component
    class, which an installed vitsearch must never do."""
    if payload is None:
        return None
    if payload.path is None:
        raise refused("Upload the image as a file.")
    return str(payload.path)


def plain_markdown(text: str) -> str:
    """`text` for a Markdown component, shown exactly as written: every punctuation mark that
    Markdown or HTML could act on is backslash-escaped."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>&~\"'=:$])", r"\\\1", text)


def build_app(index: ImageIndex, writable: bool = True) -> gr.Blocks:
    """The page over `index`; not `writable`: its cleanups and decisions are refused (serve --read-only)."""
    thumbs = ThumbnailCache()
    store_dir = index.store.dir  # where the page writes (decisions, the quarantine); it reads through index
    actions = SearchActions(index, thumbs)
    # Every upload and gallery image lands in Gradio's cache: sweep it every 10 minutes of files
    # older than 30, so that a server running for weeks keeps its temporary folder small.
    with gr.Blocks(title="vitsearch", delete_cache=(600, 1800)) as app:
        if index.manifest["weights_source"].startswith("random"):
            gr.Markdown("**This store was built with RANDOM weights: similarity scores mean nothing.** "
                        "Re-index with real weights (`--weights FILE`) for meaningful results.",
                        elem_id="random-weights-banner")
        label_pick = _search_tab(actions)
        duplicates_tab(index, thumbs, store_dir, writable)
        map_tab(index, thumbs, actions.gallery_of)
        describe_index, index_outputs = _index_tab(index)
        app.load(describe_index, None, index_outputs)
        app.load(lambda: gr.update(choices=actions.label_choices()), None, label_pick)
    return app


class SearchActions:
    """The Search tab's handlers over `index`; `upload_dir` is where Gradio keeps uploads, set
    once the query image component exists."""

    def __init__(self, index: ImageIndex, thumbs) -> None:
        self.index, self.thumbs, self.upload_dir = index, thumbs, ""

    def gallery_of(self, hits):
        return [(self.thumbs.get(h.path, h.size, h.mtime, at=h.time), _caption(h)) for h in hits]

    def run_search(self, upload, picked, k, min_score, folder, date_from, date_to, min_w, min_h, formats,
                   collapse=True, min_rating=0, only_picked=False, keyword=None, kind=None, region="",
                   region_source=None):
        """One search; `min_rating` (0: any), `only_picked` and `keyword` filter by the
        photographer's records, `kind` ("image", "video"; None or "": both) by what a file is;
        `region` (X0,Y0,X1,Y1) with `region_source` ("query" or a hit's id) searches with that
        part of the image only. (`keyword=None`, `kind=None`: Gradio's API then lets a client
        leave them out, as callers written before them do.)"""
        if upload is None and not picked and region_source is None:
            raise refused("Upload, paste or drop an image, or pick one from the index.")
        try:
            if region_source not in (None, "query"):
                query = int(region_source)
            else:
                query = _uploaded_bytes(upload, self.upload_dir) if upload is not None else picked
            box = parse_box(region) if region_source is not None and region else None
            self.index.refresh()
            where = all_of(build_where(folder, date_from, date_to, min_w, min_h, formats, kind),
                           records_where(int(min_rating or 0) or None, bool(only_picked), keyword or None))
            hits = self.index.search(query, k=int(k), where=where, min_score=min_score or None, box=box,
                                     collapse=bool(collapse))
        except VitsearchError as e:
            raise refused(_without_upload_dir(str(e), self.upload_dir)) from None
        status = (f"{len(hits)} results" + (f" from region {region}" if box else "")
                  + (f" where {where}" if where else ""))
        return self.gallery_of(hits), hits, plain_markdown(status), (query, box)

    def search_label(self, choice):
        name = _label_name(choice)
        if not name:
            raise refused("Type or pick a label, e.g. tabby cat.")
        try:
            self.index.refresh()
            hits = self.index.search_label(name)
        except VitsearchError as e:
            raise refused(str(e)) from None
        status = f"{len(hits)} images labelled {name}, most likely first"
        return self.gallery_of(hits), hits, plain_markdown(status), (None, None)

    def facets(self, hits):
        counts: dict[str, int] = {}
        for hit in hits:
            for label in hit.labels[:1]:
                counts[label] = counts.get(label, 0) + 1
        if not counts:
            return ""
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:8]
        return plain_markdown("Labels here: " + " · ".join(f"{name.split(',')[0]} ({n})" for name, n in ranked))

    def show_selected(self, hits, query, heat, evt: gr.SelectData):
        hit = hits[evt.index]
        measured = self.index.describe([hit.id]).get(hit.id, {})  # {} once the file left the index
        return (*self.preview_of(hit, query, heat), _metadata(hit, measured), hit.id)

    def preview_of(self, hit, query, heat):
        """The selected result's preview: the plain thumbnail (a video's matching frame, large),
        or with `heat` the heat map of how each of its regions matches the query."""
        if heat and query and query[0] is not None:
            source, box = query
            try:
                # a video is explained by its matching frame, which the preview shows
                target = still_at(hit.path, hit.time, PREVIEW_SIDE) if is_video(hit) else hit.id
                explained = self.index.explain(self.index.region(source, box) if box else source, target)
                image = target if is_video(hit) else self.index.image_and_size(hit.id)[0]
            except VitsearchError as e:
                raise refused(_without_upload_dir(str(e), self.upload_dir)) from None
            image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
            return heat_map(image, explained), plain_markdown(
                f"Heat map: yellow regions of {Path(hit.path).name}{at_time(hit)} match the query best "
                f"(score {explained.score:.3f})")
        note = plain_markdown(frame_note(hit)) if is_video(hit) else ""
        return self.thumbs.get(hit.path, hit.size, hit.mtime, side=PREVIEW_SIDE, at=hit.time), note

    def toggle_heat(self, hits, selected, query, heat):
        hit = next((h for h in hits if h.id == selected), None)
        if hit is None:
            return gr.update(), ""
        return self.preview_of(hit, query, heat)

    # Gradio passes the click only to functions whose signature asks for gr.SelectData.
    def query_corner(self, upload, hits, selected, first, evt: gr.SelectData):
        return self.corner("query", upload, hits, selected, first, evt)

    def preview_corner(self, upload, hits, selected, first, evt: gr.SelectData):
        return self.corner("preview", upload, hits, selected, first, evt)

    def corner(self, source, upload, hits, selected, first, evt):
        """A click on the query image or the preview: the first corner, then the second, which
        makes the region (in pixels of the upright image), shown cut out beside it."""
        unchanged = (first, gr.update(), gr.update(), gr.update(), gr.update())
        x, y = (float(v) for v in evt.index)
        if source == "preview":
            hit = next((h for h in hits if h.id == selected), None)
            if hit is None or not hit.width:
                return unchanged
            if is_video(hit):  # search's region() cuts from a photo's file; a video's frame is not one
                return first, gr.update(), gr.update(), plain_markdown(
                    "A region can be searched on a photo, not yet on a video's frame."), gr.update()
            shown = _image_size(self.thumbs.get(hit.path, hit.size, hit.mtime, side=PREVIEW_SIDE))
            x, y = x * hit.width / shown[0], y * hit.height / shown[1]
            source = str(hit.id)
        elif upload is None:
            return unchanged
        if first is None or first[0] != source:
            return (source, x, y), gr.update(), gr.update(), plain_markdown(
                "Region: first corner set; click the opposite corner on the same image."), gr.update()
        (_, x0, y0), (x1, y1) = first, (x, y)
        box = (int(min(x0, x1)), int(min(y0, y1)), int(max(x0, x1)) + 1, int(max(y0, y1)) + 1)
        try:
            crop = self.index.region(_uploaded_bytes(upload, self.upload_dir) if source == "query" else int(source),
                                     box)
        except VitsearchError as e:
            raise refused(_without_upload_dir(str(e), self.upload_dir)) from None
        crop.thumbnail((PREVIEW_SIDE // 2, PREVIEW_SIDE // 2))
        where = "query image" if source == "query" else "result"
        return None, ",".join(map(str, box)), source, plain_markdown(
            f"Region {box[0]},{box[1]} to {box[2]},{box[3]} of the {where}: press Search this region."), crop

    def show_copies(self, hits, selected):
        """The near-duplicates folded into the selected result, as a gallery of their own."""
        hit = next((h for h in hits if h.id == selected), None)
        if hit is None or not hit.copies:
            raise refused("Select a result that shows +N copies.")
        rows = self.index.describe_paths(hit.copies)
        return [(self.thumbs.get(path, rows[path]["size"], rows[path]["mtime_ns"]), Path(path).name)
                for path in hit.copies if path in rows]

    def find_paths(self, text):
        if not text or len(text) < 2:
            return gr.update(choices=[])
        paths = self.index.find_paths(text)
        return gr.update(choices=paths, value=paths[0] if paths else None)

    def label_choices(self):
        """The labels this store's images carry (best label), with how many: completion and facets."""
        return [f"{name} ({n})" for name, n in label_counts(self.index.store)]


def _search_tab(actions: SearchActions):
    """The Search tab: the query and its filters on the left, the results on the right. Returns
    the label picker, whose choices the page refreshes on load."""
    with gr.Tab("Search"):
        with gr.Row():
            query = _query_column(actions)
            shown = _results_column()
        _wire_search(actions, query, shown)
    return query.label_pick


def _query_column(actions: SearchActions) -> SimpleNamespace:
    with gr.Column(scale=1):
        upload = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                          label="Query image", elem_id="query-image")
        upload.preprocess = _uploaded_path
        actions.upload_dir = upload.GRADIO_CACHE
        find = gr.Textbox(label="…or type to find an indexed image by path", elem_id="path-find")
        picked = gr.Dropdown(choices=[], label="Indexed image", allow_custom_value=False, elem_id="path-pick")
        k = gr.Slider(1, 100, value=12, step=1, label="Results (k)")
        min_score = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Minimum score")
        collapse = gr.Checkbox(True, label="Fold near-duplicates into one result (+N copies)", elem_id="collapse")
        with gr.Row():
            label_pick = gr.Dropdown(choices=actions.label_choices(), value=None, filterable=True,
                                     allow_custom_value=True, elem_id="label-pick",
                                     label="…or find by what the model sees (ImageNet label)")
            label_button = gr.Button("Find by label", elem_id="label-search", scale=0)
        filters = _filters_accordion()
        search_button = gr.Button("Search", variant="primary", elem_id="search-button")
    return SimpleNamespace(
        upload=upload, find=find, picked=picked, label_pick=label_pick, label_button=label_button,
        search_button=search_button, filters=[k, min_score, *filters[:6], collapse, *filters[6:]])


def _filters_accordion() -> list:
    """The filter fields, in run_search's order: folder, dates, sizes, formats, then the
    photographer's records (minimum rating, picked only, keyword), then photos or videos."""
    with gr.Accordion("Filters", open=False):
        folder = gr.Textbox(label="Folder (path prefix)")
        with gr.Row():
            date_from = gr.Textbox(label="From (YYYY-MM-DD)")
            date_to = gr.Textbox(label="To (YYYY-MM-DD)")
        with gr.Row():
            min_w = gr.Number(label="Min width", precision=0)
            min_h = gr.Number(label="Min height", precision=0)
        formats = gr.CheckboxGroup(list(FORMATS), label="Formats")
        with gr.Row():
            min_rating = gr.Slider(0, 5, value=0, step=1, label="Minimum rating (stars; 0: any)",
                                   elem_id="min-rating")
            only_picked = gr.Checkbox(False, label="Picked only", elem_id="picked-only")
            keyword = gr.Textbox(label="Keyword (as written in the photo manager)", elem_id="keyword")
        kind = gr.Radio(list(KINDS), value="", label="Show", elem_id="kind-pick")
    return [folder, date_from, date_to, min_w, min_h, formats, min_rating, only_picked, keyword, kind]


def _results_column() -> SimpleNamespace:
    with gr.Column(scale=3):
        status = gr.Markdown(elem_id="search-status")
        label_facets = gr.Markdown(elem_id="label-facets")
        gallery = gr.Gallery(label="Results", columns=4, height="auto", format="jpeg", elem_id="results-gallery")
        with gr.Row():
            preview = gr.Image(label="Selected (click two corners to search a region)", interactive=False,
                               elem_id="preview")
            metadata = gr.JSON(label="Metadata", elem_id="metadata")
        heat_note = gr.Markdown(elem_id="heat-note")
        with gr.Row():
            again = gr.Button("Search from this", elem_id="search-from-this")
            heat = gr.Checkbox(False, label="Why similar: heat map on the selected result", elem_id="heat-toggle")
        with gr.Row():
            region = gr.Textbox(label="Region X0,Y0,X1,Y1 (click two corners on the query image or "
                                      "the selected result)", elem_id="region-box")
            region_button = gr.Button("Search this region", elem_id="region-search", scale=0)
        with gr.Row():
            region_note = gr.Markdown(elem_id="region-note")
            region_crop = gr.Image(label="Region", interactive=False, height=160, elem_id="region-crop")
        with gr.Accordion("Copies folded into the selected result", open=False):
            copies_button = gr.Button("Show its copies", elem_id="show-copies")
            copies_gallery = gr.Gallery(columns=6, height="auto", format="jpeg", elem_id="copies-gallery")
    return SimpleNamespace(
        status=status, label_facets=label_facets, gallery=gallery, preview=preview, metadata=metadata,
        heat_note=heat_note, again=again, heat=heat, region=region, region_button=region_button,
        region_note=region_note, region_crop=region_crop, copies_button=copies_button,
        copies_gallery=copies_gallery)


def _wire_search(actions: SearchActions, q: SimpleNamespace, r: SimpleNamespace) -> None:
    """The Search tab's events, in the order the page's API names them (run_search, run_search_1, ...)."""
    hits_state = gr.State([])
    selected_id = gr.State(None)
    query_state = gr.State((None, None))  # what the shown results were searched with: (query, box)
    first_corner = gr.State(None)
    region_source = gr.State(None)  # "query" or the id of the result the region is on
    run_search, facets, filters = actions.run_search, actions.facets, q.filters
    results = [r.gallery, hits_state, r.status, query_state]
    q.search_button.click(run_search, [q.upload, q.picked, *filters], results).then(
        facets, hits_state, r.label_facets)
    q.upload.upload(run_search, [q.upload, q.picked, *filters], results).then(facets, hits_state, r.label_facets)
    q.find.change(actions.find_paths, q.find, q.picked)
    r.gallery.select(actions.show_selected, [hits_state, query_state, r.heat],
                     [r.preview, r.heat_note, r.metadata, selected_id])
    r.again.click(lambda i, *f: run_search(None, i, *f), [selected_id, *filters],
                  results).then(facets, hits_state, r.label_facets)
    q.label_button.click(actions.search_label, q.label_pick, results).then(facets, hits_state, r.label_facets)
    r.heat.change(actions.toggle_heat, [hits_state, selected_id, query_state, r.heat], [r.preview, r.heat_note])
    corner_outputs = [first_corner, r.region, region_source, r.region_note, r.region_crop]
    q.upload.select(actions.query_corner, [q.upload, hits_state, selected_id, first_corner], corner_outputs)
    r.preview.select(actions.preview_corner, [q.upload, hits_state, selected_id, first_corner], corner_outputs)
    r.copies_button.click(actions.show_copies, [hits_state, selected_id], r.copies_gallery)
    r.region_button.click(run_search, [q.upload, q.picked, *filters, r.region, region_source],
                          results).then(facets, hits_state, r.label_facets)


def _caption(hit) -> str:
    pair = "".join(f" + {Path(c).suffix}" for c in hit.companions)
    copies = f" (+{len(hit.copies)} {'copy' if len(hit.copies) == 1 else 'copies'})" if hit.copies else ""
    return f"{hit.score:.3f} · {Path(hit.path).name}{at_time(hit)}{pair}{copies}"


def _label_name(choice) -> str:
    """'tabby, tabby cat (12)' (a completion) or typed text -> the label to look up."""
    text = (choice or "").strip()
    return re.sub(r"\s\(\d+\)$", "", text)


def _image_size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def _without_upload_dir(message: str, upload_dir: str) -> str:
    """A message as the user should read it: the server's temporary paths are none of theirs."""
    return re.sub(re.escape(str(Path(upload_dir).resolve())) + r"[^\s'\"]*", "<upload>", message)


def _uploaded_bytes(upload: str, upload_dir: str) -> bytes:
    """The bytes of an uploaded file, refused before any pixel is decoded when the image is
    bigger than a query needs and its format cannot be decoded at reduced size."""
    if not is_within(str(Path(upload).resolve()), str(Path(upload_dir).resolve())):
        raise refused("Only uploaded images can be searched with.")
    data = read_image_bytes(upload)
    if too_big := oversized_query(inspect_image(data).info):
        raise refused(f"{too_big[0].upper()}{too_big[1:]}. Upload a smaller copy.")
    return data


def _metadata(hit, measured: dict) -> dict:
    """Plain values for gr.JSON, which shows them as text (never as HTML); `measured` is the
    hit's describe() row, for a photo's quality facts (a video's are its length and moment)."""
    return {
        "path": hit.path, "kind": hit.kind, **video_facts(hit, measured), "score": round(hit.score, 4),
        "width": hit.width, "height": hit.height,
        "format": hit.format, "size": hit.size, "modified": str(hit.mtime) if hit.mtime else None,
        "captured": str(hit.captured_at) if hit.captured_at else None, "camera": hit.camera,
        "stale": hit.stale, "id": hit.id, "same shot": list(hit.companions),
        "copies": list(hit.copies), "labels": list(hit.labels),
        "rating": stars(hit.rating) or None, "pick": hit.pick, "colour label": hit.color_label,
        "keywords": list(hit.keywords), "companion files": list(hit.companion_files),
        **({} if is_video(hit) else quality_facts(measured, hit.format)),
    }


def _index_tab(index: ImageIndex):
    def describe():
        index.refresh()
        info = index.info()
        reasons = ", ".join(f"{r}: {c}" for r, c in info["failures"].items()) or "none"
        lines = [
            f"**{info['images']}** images indexed, **{info['vectors']}** vectors, **{info['failed']}** failed",
            f"Model: {plain_markdown(info['model'])} · weights: {plain_markdown(info['weights'])}",
            f"Index: {plain_markdown(info['index_type'])}{' (lists on disk)' if info['index_on_disk'] else ''}"
            f" · measured recall@10: "
            f"{info['index_recall_at_10'] or 'exact'}",
            f"Failures by reason: {plain_markdown(reasons)}",
        ]
        failures = [[path, reason, detail] for path, reason, detail in index.failures(limit=500)]
        return "\n\n".join(lines), failures

    with gr.Tab("Index"):
        overview = gr.Markdown(elem_id="index-overview")
        failures = gr.Dataframe(headers=["path", "reason", "detail"], interactive=False, elem_id="failures")
        refresh = gr.Button("Refresh")
        refresh.click(describe, None, [overview, failures])
    return describe, [overview, failures]
