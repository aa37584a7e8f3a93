"""The Map tab: the whole collection on one picture (PCA of the embeddings), the most unusual
images framed in red, and a click on the map searching from the image nearest to it."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..indexer.errors import VitsearchError
from ..search import ImageIndex
from .map_page import MapView, map_view, render_map
from .refused import refused

__all__ = ["map_tab", "MAP_WIDTH", "MAP_HEIGHT"]

MAP_WIDTH, MAP_HEIGHT = 1200, 800
MAP_RESULTS = 12


def map_tab(index: ImageIndex, thumbs, gallery_of) -> None:
    drawn: dict[str, tuple[int, MapView]] = {}  # the last view, with the generation it shows

    def current_view() -> MapView:
        index.refresh()
        generation = int(index.manifest.get("generation", 0))
        if drawn.get("view", (None,))[0] != generation:
            drawn["view"] = (generation, map_view(index))
        return drawn["view"][1]

    def draw():
        try:
            view = current_view()
        except VitsearchError as e:
            raise refused(str(e)) from None
        unusual = ", ".join(Path(p.path).name for p in view.points if p.id in view.outliers[:5])
        note = f"{len(view.points)} images; most unusual (red frames): {unusual or 'none'}"
        return render_map(view, MAP_WIDTH, MAP_HEIGHT), note

    def search_from(evt: gr.SelectData):
        view = current_view()
        x, y = (float(v) for v in evt.index)
        point = view.nearest(x, y, MAP_WIDTH, MAP_HEIGHT)
        if point is None:
            raise refused("The map is empty: index some images first.")
        try:
            hits = index.search(point.id, k=MAP_RESULTS, collapse=True)
        except VitsearchError as e:
            raise refused(str(e)) from None
        return gallery_of(hits), f"Similar to {Path(point.path).name}"

    with gr.Tab("Map"):
        draw_button = gr.Button("Draw the map", elem_id="draw-map")
        note = gr.Textbox(label="Map", interactive=False, elem_id="map-note")
        picture = gr.Image(label="Every image by its embedding (click one to search from it)", interactive=False,
                           type="pil", format="png", elem_id="map-image")
        clicked = gr.Textbox(label="Search", interactive=False, elem_id="map-clicked")
        results = gr.Gallery(label="Similar images", columns=6, height="auto", format="jpeg", elem_id="map-results")
        draw_button.click(draw, None, [picture, note])
        picture.select(search_from, None, [results, clicked])
