"""The GPU input path, run on the CPU: torchvision JPEG decoding, EXIF orientation on tensors,
timm's transform on tensors, batch fallbacks, and the pipeline's overlap of compute and commit."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import vitsearch.indexer.model.device_preprocess as device_preprocess
from tests.conftest import FakeEncoder, scene_bytes, write_scenes
from tests.indexer.test_images import oriented_jpeg, upright_test_image
from vitsearch.indexer import build_index
from vitsearch.indexer.errors import ConfigError, ImageLoadError
from vitsearch.indexer.imaging.images import load_image
from vitsearch.indexer.model.device_preprocess import DevicePreprocess, EncodedJpeg, orient
from vitsearch.indexer.model.encoder import load_encoder
from vitsearch.indexer.store.store import Store


@pytest.fixture(scope="module")
def device_inputs(random_encoder) -> DevicePreprocess:
    return DevicePreprocess(random_encoder.transform, "cpu", draft_size=538)


def photo_bytes(name: str, fmt: str, side: int = 1600) -> bytes:
    import skimage.data

    image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    image = image.resize((side, side * image.height // image.width), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pillow(orientation):
    data = oriented_jpeg(upright_test_image(), orientation)
    stored = Image.open(io.BytesIO(data)).convert("RGB")
    expected = np.asarray(ImageOps.exif_transpose(stored)).transpose(2, 0, 1)
    tensor = torch.from_numpy(np.array(stored)).permute(2, 0, 1)
    assert np.array_equal(orient(tensor, orientation).numpy(), expected)


@pytest.mark.parametrize("name, fmt", [("chelsea", "JPEG"), ("astronaut", "JPEG"), ("coffee", "PNG"),
                                       ("rocket", "WEBP")])
def test_tensor_transform_matches_timms(device_inputs, random_encoder, name, fmt):
    """Within rounding of timm's transform on the full-size Pillow image, and the same embedding."""
    data = photo_bytes(name, fmt)
    expected = random_encoder.transform(load_image(data).image)
    prepared, info = device_inputs.prepare(data)
    assert isinstance(prepared, EncodedJpeg) == (fmt == "JPEG")
    assert info.format == fmt and info.width == 1600
    got = device_inputs.finish([prepared])[0]
    assert got.shape == expected.shape and got.dtype == torch.float32
    difference = (got - expected).abs()
    assert float(difference.mean()) < 0.003 and float(difference.max()) < 0.05
    a, b = random_encoder.encode(torch.stack([got, expected]))
    assert float(a @ b) >= 0.9999


def test_a_bad_jpeg_in_a_batch_fails_alone(device_inputs, monkeypatch):
    """nvJPEG's batch call gives no partial results: the rest must still decode, the bad one
    must fail with the reason the CPU path gives, and pixel-budget chunks change nothing."""
    good = [scene_bytes(seed, "JPEG", size=(400, 300)) for seed in range(3)]
    bad = undefined_huffman_tables(good[0])
    inputs = [device_inputs.prepare(data)[0] for data in (good[0], bad, good[1], good[2])]
    assert all(isinstance(i, EncodedJpeg) for i in inputs)
    results = device_inputs.finish(inputs)
    assert isinstance(results[1], ImageLoadError)
    with pytest.raises(ImageLoadError) as cpu_path:
        load_image(bad)
    assert results[1].reason == cpu_path.value.reason
    monkeypatch.setattr(device_preprocess, "DECODE_PIXEL_BUDGET", 1)
    one_by_one = device_inputs.finish(inputs)
    for batched, alone in zip(results[:1] + results[2:], one_by_one[:1] + one_by_one[2:], strict=False):
        assert torch.equal(batched, alone)


def undefined_huffman_tables(jpeg: bytes) -> bytes:
    """A JPEG whose header reads fine but whose scan refers to Huffman tables it never defines."""
    data = bytearray(jpeg)
    sos = data.index(b"\xff\xda")
    for component in range(data[sos + 4]):
        data[sos + 6 + 2 * component] = 0x33
    return bytes(data)


def test_awkward_jpegs_take_the_cpu_path(device_inputs):
    cmyk = Image.open(io.BytesIO(scene_bytes(3, "PNG"))).convert("CMYK")
    buffer = io.BytesIO()
    cmyk.save(buffer, "JPEG")
    cut = scene_bytes(4, "JPEG", size=(400, 300))[:-500]
    assert not isinstance(device_inputs.prepare(buffer.getvalue())[0], EncodedJpeg)
    with pytest.raises(ImageLoadError, match="truncat|decoding failed"):
        device_inputs.prepare(cut)
    gray = io.BytesIO()
    Image.open(io.BytesIO(scene_bytes(5, "PNG"))).convert("L").save(gray, "JPEG")
    prepared = device_inputs.prepare(gray.getvalue())[0]
    assert isinstance(prepared, EncodedJpeg)
    assert device_inputs.finish([prepared])[0].shape == (3, 256, 256)


def test_decode_option_is_checked():
    assert load_encoder("random", device="cpu").device_inputs is None, "auto keeps Pillow on a CPU"
    assert load_encoder("random", device="cpu", decode="device").device_inputs is not None
    with pytest.raises(ConfigError, match="exact=True"):
        load_encoder("random", device="cpu", exact=True, decode="device")
    with pytest.raises(ConfigError, match="decode='gpu'"):
        load_encoder("random", device="cpu", decode="gpu")


class DeferredEncoder(FakeEncoder):
    """Looks like a CUDA encoder: launch() returns before the vectors are read."""

    device = "cuda:fake"

    def __init__(self, events: list):
        super().__init__()
        self.events = events

    def launch(self, batch):
        number = sum(1 for e in self.events if e[0] == "launch")
        self.events.append(("launch", number))
        vectors = self.encode(batch)

        def wait():
            self.events.append(("wait", number))
            return vectors

        return wait


def test_gpu_overlap_commits_a_batch_while_the_next_computes(tmp_path, monkeypatch):
    events: list = []
    folder = tmp_path / "photos"
    write_scenes(folder, range(10))
    monkeypatch.setattr(Store, "transaction", _recording(Store.transaction, events))
    report = build_index([folder], tmp_path / "store", encoder=DeferredEncoder(events), batch_size=3)
    launches = [e for e in events if e[0] == "launch"]
    assert len(launches) == 4 and report.added == 10
    # each batch is launched before the previous one is waited for
    for n in range(1, 4):
        assert events.index(("launch", n)) < events.index(("wait", n - 1))
    plain = build_index([folder], tmp_path / "plain", encoder=FakeEncoder(), batch_size=3)
    assert plain.added == report.added
    with Store(tmp_path / "store").connect() as a, Store(tmp_path / "plain").connect() as b:
        query = "SELECT path, embedding FROM images ORDER BY path"
        assert a.execute(query).fetchall() == b.execute(query).fetchall()


def _recording(transaction, events: list):
    def recorded(self):
        events.append(("commit",))
        return transaction(self)

    return recorded
