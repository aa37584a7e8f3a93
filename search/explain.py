"""Why is this similar: how much each patch of the target matches the query.

Both images go through the model once (the same pass gives their embeddings). Each of the
target's patch tokens, through the LayerNorm the embedding goes through, is scored by its best
cosine to any of the query's patch tokens: a region of the target scores high when something
in the query looks like it. The grid covers the square the model saw (timm's eval transform
resizes the short side and cuts the centre), mapped back to the target's own pixels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Explanation", "explain_tokens", "model_view", "heat_map"]


@dataclass(frozen=True)
class Explanation:
    grid: list[list[float]]  # one row of cells per patch row over the target, top row first
    width: int  # the target's upright size, in pixels
    height: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1: the part of the target the grid covers
    score: float  # cosine of the two embeddings, as a search scores them

    @property
    def rows(self) -> int:
        return len(self.grid)

    @property
    def cols(self) -> int:
        return len(self.grid[0]) if self.grid else 0

    def cell_box(self, row: int, col: int) -> tuple[float, float, float, float]:
        """The target pixels (x0, y0, x1, y1) that cell (row, col) scores."""
        x0, y0, x1, y1 = self.box
        w, h = (x1 - x0) / self.cols, (y1 - y0) / self.rows
        return (x0 + col * w, y0 + row * h, x0 + (col + 1) * w, y0 + (row + 1) * h)

    def to_record(self) -> dict:
        record = asdict(self)
        record.update(rows=self.rows, cols=self.cols, box=list(self.box))
        return record


def explain_tokens(query_tokens: np.ndarray, target_tokens: np.ndarray, score: float,
                   size: tuple[int, int], data_config: dict | None) -> Explanation:
    """Score each target patch by its best cosine to a query patch (tokens are unit vectors)."""
    rows, cols, dim = target_tokens.shape
    similarity = target_tokens.reshape(-1, dim) @ query_tokens.reshape(-1, dim).T
    grid = similarity.max(axis=1).reshape(rows, cols)
    width, height = size
    return Explanation([[round(float(v), 6) for v in row] for row in grid], int(width), int(height),
                       model_view(width, height, data_config), float(score))


def model_view(width: int, height: int, data_config: dict | None) -> tuple[float, float, float, float]:
    """The part of a width x height image the model sees: with timm's centre crop, the short side
    is resized to input/crop_pct and the central input x input square is kept; otherwise the
    whole image (squashed)."""
    if not data_config or data_config.get("crop_mode", "center") != "center":
        return (0.0, 0.0, float(width), float(height))
    size = int(data_config["input_size"][-1])
    scale_size = math.floor(size / float(data_config.get("crop_pct") or 1.0))
    side = size * min(width, height) / scale_size
    x0, y0 = (width - side) / 2, (height - side) / 2
    return (x0, y0, x0 + side, y0 + side)


def heat_map(image, explanation: Explanation, *, alpha: float = 0.55):
    """The target image with the grid laid over it (dark blue = no match, yellow = best match);
    what the model did not see is dimmed."""
    from PIL import Image, ImageOps

    base = image.convert("RGB")
    sx, sy = base.width / explanation.width, base.height / explanation.height
    x0, y0, x1, y1 = explanation.box
    box = (round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy))
    grid = np.asarray(explanation.grid, np.float32)
    span = float(grid.max() - grid.min()) or 1.0
    levels = Image.fromarray(np.uint8(255 * (grid - grid.min()) / span), "L")
    levels = levels.resize((max(1, box[2] - box[0]), max(1, box[3] - box[1])), Image.Resampling.BILINEAR)
    colours = ImageOps.colorize(levels, black="#1a1a80", mid="#d02020", white="#ffe020")
    out = Image.blend(base, Image.new("RGB", base.size, "black"), 0.5)  # outside the model's view
    seen = base.crop(box)
    out.paste(Image.blend(seen, colours, alpha), box[:2])
    return out
