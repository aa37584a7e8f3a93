"""The Gradio page: search by image, refine with filters, review duplicates, see the index.

`build_app(index)` builds the Blocks from an injected ImageIndex; handlers are thin functions
over search/ (and indexer/ for decisions) and return generated thumbnails only, never paths to
originals. Text that comes from file names is shown as plain text, never as Markdown or HTML.
"""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr

from ..indexer.errors import VitsearchError
from ..indexer.images import inspect_image, read_image_bytes
from ..indexer.scan import is_within
from ..search import ImageIndex
from .duplicates_tab import duplicates_tab
from .filters import FORMATS, build_where
from .thumbnails import PREVIEW_SIDE, ThumbnailCache

__all__ = ["build_app", "plain_markdown", "UPLOAD_MAX_PIXELS"]

# A query needs no more than a few megapixels. Formats that cannot be decoded at reduced size
# (PNG, TIFF, WebP, ...) are refused above this, so four concurrent uploads stay within ~1 GB.
UPLOAD_MAX_PIXELS = 40_000_000


def _uploaded_path(payload) -> str | None:
    """Stands in for the query image's preprocess: the uploaded file's path and nothing else.
    Gradio's own would open the file with Pillow (some formats at full size, and failing with
    messages that name the server's temporary paths) before our loader sees it. An instance
    attribute, not a subclass: Gradio writes a .pyi stub beside any module defining a component
    class, which an installed vitsearch must never do."""
    if payload is None:
        return None
    if payload.path is None:
        raise gr.Error("Upload the image as a file.")
    return str(payload.path)


def plain_markdown(text: str) -> str:
    """`text` for a Markdown component, shown exactly as written: every punctuation mark that
    Markdown or HTML could act on is backslash-escaped."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>&~\"'=:$])", r"\\\1", text)


def build_app(index: ImageIndex) -> gr.Blocks:
    thumbs = ThumbnailCache()

    def gallery_of(hits):
        return [(thumbs.get(h.path, h.size, h.mtime),
                 f"{h.score:.3f} · {Path(h.path).name}" + "".join(f" + {Path(c).suffix}" for c in h.companions))
                for h in hits]

    def run_search(upload, picked, k, min_score, folder, date_from, date_to, min_w, min_h, formats):
        if upload is None and not picked:
            raise gr.Error("Upload, paste or drop an image, or pick one from the index.")
        try:
            query = _uploaded_bytes(upload, upload_dir) if upload is not None else picked
            index.refresh()
            where = build_where(folder, date_from, date_to, min_w, min_h, formats)
            hits = index.search(query, k=int(k), where=where, min_score=min_score or None)
        except VitsearchError as e:
            raise gr.Error(_without_upload_dir(str(e), upload_dir)) from None
        status = f"{len(hits)} results" + (f" where {where}" if where else "")
        return gallery_of(hits), hits, plain_markdown(status)

    def show_selected(hits, evt: gr.SelectData):
        hit = hits[evt.index]
        preview = thumbs.get(hit.path, hit.size, hit.mtime, side=PREVIEW_SIDE)
        return preview, _metadata(hit), hit.id

    def find_paths(text):
        if not text or len(text) < 2:
            return gr.update(choices=[])
        paths = index.find_paths(text)
        return gr.update(choices=paths, value=paths[0] if paths else None)

    # Every upload and gallery image lands in Gradio's cache: sweep it every 10 minutes of files
    # older than 30, so that a server running for weeks keeps its temporary folder small.
    with gr.Blocks(title="vitsearch", delete_cache=(600, 1800)) as app:
        if index.manifest["weights_source"].startswith("random"):
            gr.Markdown("**This store was built with RANDOM weights: similarity scores mean nothing.** "
                        "Re-index with real weights (`--weights FILE`) for meaningful results.",
                        elem_id="random-weights-banner")
        with gr.Tab("Search"):
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                      label="Query image", elem_id="query-image")
                    upload.preprocess = _uploaded_path
                    upload_dir = upload.GRADIO_CACHE
                    find = gr.Textbox(label="…or type to find an indexed image by path", elem_id="path-find")
                    picked = gr.Dropdown(choices=[], label="Indexed image", allow_custom_value=False,
                                         elem_id="path-pick")
                    k = gr.Slider(1, 100, value=12, step=1, label="Results (k)")
                    min_score = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Minimum score")
                    with gr.Accordion("Filters", open=False):
                        folder = gr.Textbox(label="Folder (path prefix)")
                        with gr.Row():
                            date_from = gr.Textbox(label="From (YYYY-MM-DD)")
                            date_to = gr.Textbox(label="To (YYYY-MM-DD)")
                        with gr.Row():
                            min_w = gr.Number(label="Min width", precision=0)
                            min_h = gr.Number(label="Min height", precision=0)
                        formats = gr.CheckboxGroup(list(FORMATS), label="Formats")
                    search_button = gr.Button("Search", variant="primary", elem_id="search-button")
                with gr.Column(scale=3):
                    status = gr.Markdown(elem_id="search-status")
                    gallery = gr.Gallery(label="Results", columns=4, height="auto", format="jpeg",
                                         elem_id="results-gallery")
                    with gr.Row():
                        preview = gr.Image(label="Selected", interactive=False, elem_id="preview")
                        metadata = gr.JSON(label="Metadata", elem_id="metadata")
                    again = gr.Button("Search from this", elem_id="search-from-this")
            hits_state = gr.State([])
            selected_id = gr.State(None)
            filters = [k, min_score, folder, date_from, date_to, min_w, min_h, formats]
            search_button.click(run_search, [upload, picked, *filters], [gallery, hits_state, status])
            upload.upload(run_search, [upload, picked, *filters], [gallery, hits_state, status])
            find.change(find_paths, find, picked)
            gallery.select(show_selected, hits_state, [preview, metadata, selected_id])
            again.click(lambda i, *f: run_search(None, i, *f), [selected_id, *filters],
                        [gallery, hits_state, status])

        duplicates_tab(index, thumbs)
        describe_index, index_outputs = _index_tab(index)
        app.load(describe_index, None, index_outputs)
    return app


def _without_upload_dir(message: str, upload_dir: str) -> str:
    """A message as the user should read it: the server's temporary paths are none of theirs."""
    return re.sub(re.escape(str(Path(upload_dir).resolve())) + r"[^\s'\"]*", "<upload>", message)


def _uploaded_bytes(upload: str, upload_dir: str) -> bytes:
    """The bytes of an uploaded file, refused before any pixel is decoded when the image is
    bigger than a query needs and its format cannot be decoded at reduced size."""
    if not is_within(str(Path(upload).resolve()), str(Path(upload_dir).resolve())):
        raise gr.Error("Only uploaded images can be searched with.")
    data = read_image_bytes(upload)
    info = inspect_image(data).info
    if info.width * info.height > UPLOAD_MAX_PIXELS and info.format not in ("JPEG", "MPO"):
        raise gr.Error(f"This {info.format} is {info.width}x{info.height} pixels; a query image "
                       f"may have at most {UPLOAD_MAX_PIXELS // 1_000_000} MP. Upload a smaller copy.")
    return data


def _metadata(hit) -> dict:
    """Plain values for gr.JSON, which shows them as text (never as HTML)."""
    return {
        "path": hit.path, "score": round(hit.score, 4), "width": hit.width, "height": hit.height,
        "format": hit.format, "size": hit.size, "modified": str(hit.mtime) if hit.mtime else None,
        "captured": str(hit.captured_at) if hit.captured_at else None, "camera": hit.camera,
        "stale": hit.stale, "id": hit.id, "same shot": list(hit.companions),
    }


def _index_tab(index: ImageIndex):
    def describe():
        index.refresh()
        info = index.info()
        reasons = ", ".join(f"{r}: {c}" for r, c in info["failures"].items()) or "none"
        lines = [
            f"**{info['images']}** images indexed, **{info['vectors']}** vectors, **{info['failed']}** failed",
            f"Model: {plain_markdown(info['model'])} · weights: {plain_markdown(info['weights'])}",
            f"Index: {plain_markdown(info['index_type'])} · measured recall@10: "
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
