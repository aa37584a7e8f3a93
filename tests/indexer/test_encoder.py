"""The real architecture: weights loading, content-sensitive random init, and reference parity."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import scene_bytes
from tests.indexer.test_images import oriented_jpeg
from vitsearch.indexer.errors import ConfigError, WeightsUnavailableError
from vitsearch.indexer.imaging.images import load_image
from vitsearch.indexer.model.encoder import load_encoder, resolve_device
from vitsearch.indexer.model.weights import MODEL_NAME, build_model

PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
          "hubble_deep_field.jpg", "retina.jpg", "ihc.png"]


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def embed_bytes(encoder, data: bytes) -> np.ndarray:
    loaded = load_image(data, draft_size=encoder.draft_size)
    return encoder.encode(encoder.preprocess(loaded.image).unsqueeze(0))[0]


@pytest.fixture(scope="module")
def real_photos() -> dict[str, bytes]:
    """Public-domain photos shipped by scikit-image, enlarged to 2-5 MP and saved as JPEG, PNG or WebP."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    photos = {}
    for i, name in enumerate(PHOTOS):
        image = Image.open(folder / name).convert("RGB")
        scale = max(1, int(np.ceil(np.sqrt(2_500_000 / (image.width * image.height)))))
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC)
        fmt = ["JPEG", "JPEG", "PNG", "WEBP"][i % 4]
        buffer = io.BytesIO()
        image.save(buffer, fmt, **({"quality": 92} if fmt != "PNG" else {}))
        photos[f"{name}.{fmt.lower()}"] = buffer.getvalue()
    return photos


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, random_encoder) -> Path:
    """The random backbone saved the way the hub ships timm weights: safetensors, head included."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in random_encoder.model.state_dict().items()}
    state["head.weight"] = torch.zeros(1000, random_encoder.dim)
    state["head.bias"] = torch.zeros(1000)
    path = tmp_path_factory.mktemp("weights") / "model.safetensors"
    save_file(state, str(path))
    return path


@pytest.fixture(scope="module")
def reference(weights_file):
    """The model card's pipeline: create_model(num_classes=0), timm's eval transform, fp32."""
    import timm
    from safetensors.torch import load_file

    model = timm.create_model(MODEL_NAME, pretrained=False, num_classes=0)
    state = {k: v for k, v in load_file(str(weights_file)).items() if not k.startswith("head.")}
    model.load_state_dict(state)
    model.eval()
    config = timm.data.resolve_model_data_config(model)
    transforms = timm.data.create_transform(**config, is_training=False)

    def embed(data: bytes) -> np.ndarray:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        with torch.no_grad():
            return model(transforms(image).unsqueeze(0))[0].numpy()

    embed.transforms = transforms
    return embed


def test_random_weights_make_content_matter(random_encoder):
    """A checkerboard and flat grey share their mean colour; only content tells them apart."""
    import timm

    gammas = [m.gamma for m in random_encoder.model.modules() if hasattr(m, "gamma")]
    assert gammas and all(torch.all(g == 1) for g in gammas)
    y, x = np.mgrid[0:300, 0:300]
    checker = np.repeat(((((x // 20) + (y // 20)) % 2) * 255).astype(np.uint8)[..., None], 3, axis=2)
    grey = np.full((300, 300, 3), 128, np.uint8)

    def similarity(model) -> float:
        vectors = []
        for pixels in (checker, grey):
            tensor = random_encoder.preprocess(Image.fromarray(pixels)).unsqueeze(0)
            with torch.no_grad():
                vectors.append(model.forward_head(model.forward_features(tensor), pre_logits=True)[0])
        return cosine(*vectors)

    ours = similarity(random_encoder.model)
    torch.manual_seed(0)
    timm_default = similarity(timm.create_model(MODEL_NAME, pretrained=False, num_classes=0).eval())
    assert timm_default > 0.95, "timm's init (LayerScale 1e-5) sees mostly the mean colour"
    assert ours < 0.8, ours


def test_random_weights_are_reproducible(random_encoder):
    _, info = build_model("random")
    assert info.fingerprint == random_encoder.weights.fingerprint
    assert info.source == "random:seed=0"


def test_exif_orientations_embed_alike(random_encoder):
    photo = Image.open(io.BytesIO(scene_bytes(5, "PNG", size=(480, 320))))
    vectors = [embed_bytes(random_encoder, oriented_jpeg(photo, o)) for o in range(1, 9)]
    worst = min(cosine(vectors[0], v) for v in vectors[1:])
    assert worst >= 0.999, worst
    sideways = embed_bytes(random_encoder, scene_bytes(5, "JPEG", size=(480, 320)))
    rotated = Image.open(io.BytesIO(scene_bytes(5, "PNG", size=(480, 320)))).transpose(Image.Transpose.ROTATE_90)
    buffer = io.BytesIO()
    rotated.save(buffer, "JPEG", quality=95)
    rotated_similarity = cosine(sideways, embed_bytes(random_encoder, buffer.getvalue()))
    assert rotated_similarity < 0.999, "an image left sideways must fail the same bar"


def test_parity_with_the_model_card_pipeline(real_photos, reference, weights_file):
    exact = load_encoder(str(weights_file), device="cpu", exact=True)
    default = load_encoder(str(weights_file), device="cpu")
    assert exact.precision == "fp32" and exact.draft_size is None
    squash_worst, exact_worst, default_worst = 1.0, 1.0, 1.0
    for data in real_photos.values():
        expected = reference(data)
        exact_worst = min(exact_worst, cosine(embed_bytes(exact, data), expected))
        default_worst = min(default_worst, cosine(embed_bytes(default, data), expected))
        squashed = Image.open(io.BytesIO(data)).convert("RGB").resize((256, 256), Image.Resampling.BICUBIC)
        tensor = reference.transforms.transforms[-1](reference.transforms.transforms[-2](squashed))
        squash_worst = min(squash_worst, cosine(exact.encode(tensor.unsqueeze(0))[0], expected))
    print(f"parity: exact {exact_worst:.6f}, default {default_worst:.6f}, squash {squash_worst:.6f}")
    assert exact_worst >= 0.9999
    assert default_worst >= 0.999
    assert squash_worst < 0.999, "a wrong preprocessing must fail the same bar"


def test_weights_file_forms_load_to_the_same_model(tmp_path, weights_file, random_encoder):
    from safetensors.torch import load_file

    state = load_file(str(weights_file))
    headless = {k: v for k, v in state.items() if not k.startswith("head.")}
    torch.save(headless, tmp_path / "plain.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "nested.pth")
    for path in (weights_file, tmp_path / "plain.pth", tmp_path / "nested.pth"):
        _, info = build_model(str(path))
        assert info.fingerprint == random_encoder.weights.fingerprint, path
        assert info.source == f"file:{os.path.abspath(path)}"


def test_unusable_weights_files_say_so(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="not found"):
        build_model(str(tmp_path / "missing.safetensors"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="cannot read"):
        build_model(str(tmp_path / "junk.pth"))
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsUnavailableError, match="does not hold weights"):
        build_model(str(tmp_path / "other.pth"))


def test_offline_without_cache_fails_fast_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache" / "hub"))
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as caught:
        build_model(None)
    assert time.monotonic() - started < 30
    assert "--weights FILE" in str(caught.value) and "--weights random" in str(caught.value)


def test_cuda_on_a_machine_without_one_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")


@pytest.mark.e2e  # the real CLI or model in child processes
def test_exported_embeddings_match_the_model_card_with_a_weights_file(real_photos, reference, weights_file, tmp_path):
    """The user's path end to end: `vitsearch index --weights FILE [--exact]`, then `export`."""
    import pyarrow.parquet as pq

    from tests.conftest import run_cli

    folder = tmp_path / "photos"
    folder.mkdir()
    for name, data in real_photos.items():
        (folder / name.replace(".", "_", name.count(".") - 1)).write_bytes(data)
    expected = {str(folder / name.replace(".", "_", name.count(".") - 1)): reference(data)
                for name, data in real_photos.items()}
    for flags, bar in (([], 0.999), (["--exact"], 0.9999), (["--decode", "device"], 0.999)):
        store = tmp_path / f"store{'-'.join(flags)}"
        result = run_cli("index", folder, "--store", store, "--weights", weights_file, *flags)
        assert result.returncode == 0, result.stderr
        out = tmp_path / f"export{'-'.join(flags)}.parquet"
        assert run_cli("export", "--store", store, out).returncode == 0
        rows = pq.read_table(out).to_pylist()
        assert {r["path"] for r in rows} == set(expected)
        worst = min(cosine(r["embedding"], expected[r["path"]]) for r in rows)
        assert worst >= bar, (flags, worst)
