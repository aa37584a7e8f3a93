"""Decode and preprocess on the model's device: batched nvJPEG on CUDA, then timm's own eval
transform applied to tensors there, so reader threads only read bytes and parse headers.

The same code runs on CPU (libjpeg-turbo through torchvision), which is how the tests cover it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ImageLoadError
from ..imaging.images import ImageInfo, inspect_image, load_image

__all__ = ["DevicePreprocess", "EncodedJpeg", "orient"]

# Pixel layouts nvJPEG turns into RGB; CMYK/YCCK JPEGs take the CPU path.
DEVICE_JPEG_MODES = ("RGB", "L")
# Decoded pixels held on the device at once (~600 MB as uint8): bounds a batch of 24 MP photos.
DECODE_PIXEL_BUDGET = 200_000_000


@dataclass(frozen=True)
class EncodedJpeg:
    """A JPEG whose header passed our checks, waiting to be decoded on the device."""

    data: object  # 1-D uint8 CPU tensor of the file's bytes
    orientation: int  # EXIF orientation to apply after decoding
    pixels: int


class DevicePreprocess:
    """Turns file bytes into model inputs on `device`, equal to timm's transform to within rounding."""

    def __init__(self, transform, device: str, draft_size: int | None):
        self.steps = _tensor_steps(transform)
        if self.steps is None:
            raise ValueError(f"no tensor equivalent for {transform}")
        self.device = device
        self.draft_size = draft_size  # for images decoded on the CPU after all

    @staticmethod
    def supports(transform) -> bool:
        return _tensor_steps(transform) is not None

    def prepare(self, data: bytes) -> tuple[object, ImageInfo]:
        """Reader thread: a JPEG stays encoded for the device; anything else is decoded here."""
        import torch

        header = inspect_image(data)
        if header.info.format == "JPEG" and header.mode in DEVICE_JPEG_MODES and _ends_whole(data):
            encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return EncodedJpeg(encoded, header.orientation, header.info.width * header.info.height), header.info
        loaded = load_image(data, draft_size=self.draft_size)
        return _pixels(loaded.image), loaded.info

    def finish(self, inputs: list) -> list:
        """Main thread: each input as a model-ready tensor on the device, or the ImageLoadError
        that its decoding raised. JPEGs are decoded in batches bounded by DECODE_PIXEL_BUDGET."""
        results: list = [None] * len(inputs)
        chunk: list[int] = []
        budget = 0
        for position, item in enumerate(inputs):
            if not isinstance(item, EncodedJpeg):
                results[position] = self._transform(self._upload(item))
                continue
            if chunk and budget + item.pixels > DECODE_PIXEL_BUDGET:
                self._decode_chunk(inputs, chunk, results)
                chunk, budget = [], 0
            chunk.append(position)
            budget += item.pixels
        if chunk:
            self._decode_chunk(inputs, chunk, results)
        return results

    def _decode_chunk(self, inputs: list, positions: list[int], results: list) -> None:
        from torchvision.io import ImageReadMode, decode_jpeg

        jpegs = [inputs[p] for p in positions]
        try:
            decoded = decode_jpeg([j.data for j in jpegs], mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:  # the batch call gives no partial results: retry one by one
            decoded = [self._decode_one(j) for j in jpegs]
        else:
            decoded = [orient(image, j.orientation) for image, j in zip(decoded, jpegs, strict=False)]
        for position, image in zip(positions, decoded, strict=False):
            results[position] = image if isinstance(image, ImageLoadError) else self._transform(image)

    def _decode_one(self, jpeg: EncodedJpeg):
        """Upright pixels on the device, decoded there or, if the device refuses the file, by Pillow."""
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            return orient(decode_jpeg(jpeg.data, mode=ImageReadMode.RGB, device=self.device), jpeg.orientation)
        except RuntimeError:
            pass
        try:
            loaded = load_image(jpeg.data.numpy().tobytes(), draft_size=self.draft_size)
        except ImageLoadError as e:
            return e
        return self._upload(_pixels(loaded.image))

    def _upload(self, pixels):
        if self.device.startswith("cuda"):
            return pixels.pin_memory().to(self.device, non_blocking=True)
        return pixels

    def _transform(self, pixels):
        """timm's steps on a uint8 CHW tensor; ToTensor's scaling becomes a division."""
        for step in self.steps:
            pixels = pixels.float().div_(255) if step is None else step(pixels)
        return pixels


def orient(pixels, orientation: int):
    """Apply an EXIF orientation (2-8) to CHW pixels, as Pillow's exif_transpose does."""
    if orientation in (5, 6, 7, 8):
        pixels = pixels.transpose(-1, -2)
    flips = {2: (-1,), 3: (-1, -2), 4: (-2,), 6: (-1,), 7: (-1, -2), 8: (-2,)}.get(orientation)
    return pixels.flip(flips) if flips else pixels


def _ends_whole(data: bytes) -> bool:
    """A JPEG that ends in its end-of-image marker: decoders differ on cut files, so those go
    to Pillow, which reports them as truncated exactly as the CPU path does."""
    return b"\xff\xd9" in data[-32:]


def _pixels(image):
    """An RGB PIL image as a uint8 CHW tensor."""
    import numpy as np
    import torch

    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)


def _tensor_steps(transform) -> list | None:
    """timm's eval transform as steps that take tensors (None marks ToTensor's scaling),
    or None when it holds a step we cannot reproduce on tensors."""
    from torchvision import transforms as T

    steps = []
    for step in getattr(transform, "transforms", [transform]):
        if isinstance(step, T.Resize) and step.max_size is None and step.antialias in (True, None):
            steps.append(T.Resize(step.size, step.interpolation, antialias=True))
        elif isinstance(step, (T.CenterCrop, T.Normalize)):
            steps.append(step)
        elif type(step).__name__ in ("ToTensor", "MaybeToTensor"):
            steps.append(None)
        else:
            return None
    return steps if None in steps else None
