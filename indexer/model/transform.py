"""timm's eval transform (resize the short side, centre crop, to tensor, normalise) without
importing timm or torchvision: the same Pillow calls and the same float arithmetic, so the
tensors are equal bit for bit (tests/indexer/test_fast_start.py compares them)."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

__all__ = ["EvalTransform"]

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


class EvalTransform:
    """For a data config with crop_mode "center" (what timm resolves for this model)."""

    def __init__(self, data_config: dict):
        if data_config.get("crop_mode", "center") != "center" or data_config["interpolation"] not in _RESAMPLE:
            raise ValueError(f"no equivalent of timm's transform for {data_config}")
        self.size = int(data_config["input_size"][-1])
        self.scale_size = math.floor(self.size / float(data_config["crop_pct"]))
        self.interpolation = data_config["interpolation"]
        self.resample = _RESAMPLE[self.interpolation]
        self.mean = torch.tensor(data_config["mean"], dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(data_config["std"], dtype=torch.float32).view(-1, 1, 1)

    @property
    def transforms(self) -> list:
        """The same steps as torchvision transforms, as timm builds them (device_preprocess
        applies those to tensors); torchvision is imported only when asked for."""
        from torchvision import transforms as T

        mode = T.InterpolationMode(self.interpolation)
        return [T.Resize(self.scale_size, interpolation=mode), T.CenterCrop((self.size, self.size)), T.ToTensor(),
                T.Normalize(self.mean.flatten().tolist(), self.std.flatten().tolist())]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.scale_size, int(self.scale_size * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        image = image.resize((new_w, new_h), self.resample)
        top = int(round((new_h - self.size) / 2.0))
        left = int(round((new_w - self.size) / 2.0))
        image = image.crop((left, top, left + self.size, top + self.size))
        pixels = torch.from_numpy(np.array(image, np.uint8, copy=True)).permute(2, 0, 1).contiguous()
        return pixels.to(torch.float32).div(255).sub_(self.mean).div_(self.std)
