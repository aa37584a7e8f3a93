"""A region of a picture as a query: the box is cut from the upright image at full resolution,
then reduced exactly as a lossless file of that region would be, so searching a box equals
searching the same crop saved as PNG."""

from __future__ import annotations

import numpy as np

from ..indexer.errors import ConfigError, ImageLoadError
from ..indexer.imaging.images import load_image, read_image_bytes, reduce_image, to_rgb

__all__ = ["Box", "parse_box", "region_of"]

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels of the upright image, x1 and y1 exclusive


def parse_box(text: str) -> Box:
    """'X0,Y0,X1,Y1' -> a box; a clear error for anything else."""
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ConfigError(f"box wants X0,Y0,X1,Y1 in pixels of the upright image, e.g. 10,20,300,240; got {text!r}",
                          parameter="box")
    return values  # type: ignore[return-value]


def region_of(source, box: Box, draft_size: int | None):
    """The RGB crop of `source` (a file path, bytes, a PIL image or an HxWx3 array)."""
    from PIL import Image

    if isinstance(source, Image.Image):
        image = to_rgb(source)
    elif isinstance(source, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(source.astype(np.uint8)), "RGB")
    else:
        data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else read_image_bytes(str(source))
        try:
            image = load_image(data).image  # full size: the box is in the image's own pixels
        except ImageLoadError as e:
            raise ConfigError(f"query image unusable: {e}") from e
    x0, y0, x1, y1 = (int(v) for v in box)
    width, height = image.size
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ConfigError(f"box {x0},{y0},{x1},{y1} is not inside the {width}x{height} image "
                          "(X0 < X1 <= width, Y0 < Y1 <= height, upright pixels)")
    crop = image.crop((x0, y0, x1, y1))
    return reduce_image(crop, draft_size) if draft_size else crop
