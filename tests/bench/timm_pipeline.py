"""timm's own batch pipeline (create_dataset + create_loader with worker processes, then the
model's pre-logits), the peer index_throughput.py compares `vitsearch index` with.

    python tests/bench/timm_pipeline.py FOLDER MODEL_NAME BATCH_SIZE DEVICE

Run as a script it is the whole pipeline as a user runs it: it imports only torch and timm,
creates the model, embeds the folder in bf16 (fp16 on a GPU) and prints the image count and the
seconds since the process started its imports, start-up included."""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the imports: the whole script is timed

import os  # noqa: E402
import sys  # noqa: E402

import timm  # noqa: E402
import timm.data  # noqa: E402
import torch  # noqa: E402


def embed_folder(folder: str, model, data_config: dict, batch_size: int, dtype, device: str) -> int:
    """Embed every image timm's folder reader takes, at `dtype` under autocast (None: fp32);
    returns how many."""
    dataset = timm.data.create_dataset("", root=folder)
    loader = timm.data.create_loader(
        dataset, input_size=data_config["input_size"], batch_size=batch_size, is_training=False,
        use_prefetcher=False, interpolation=data_config["interpolation"], mean=data_config["mean"],
        std=data_config["std"], crop_pct=data_config["crop_pct"], num_workers=os.cpu_count() or 1,
    )
    kind, count = device.split(":")[0], 0
    autocast = torch.autocast(kind, dtype=dtype) if dtype is not None else torch.autocast(kind, enabled=False)
    with torch.inference_mode(), autocast:
        for images, _ in loader:
            model.forward_head(model.forward_features(images.to(device)), pre_logits=True).cpu()
            count += len(images)
    return count


def main() -> None:
    folder, model_name, batch_size, device = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    model = timm.create_model(model_name, pretrained=False).eval().to(device)
    config = timm.data.resolve_data_config({}, model=model)
    half = torch.bfloat16 if device == "cpu" else torch.float16
    count = embed_folder(folder, model, config, batch_size, half, device)
    print(count, time.perf_counter() - STARTED)


if __name__ == "__main__":
    main()
