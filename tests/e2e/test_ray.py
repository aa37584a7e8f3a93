"""`--engine ray` on a real local Ray instance (and a simulated multi-node cluster): the store
equals the local engine's, only new and changed files go to the cluster, a killed job resumes
without redoing merged shards, and embedding actors land on the node that has the GPU."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, run_cli, write_scenes
from tests.indexer.test_sync import assert_consistent
from vitsearch.indexer import build_index
from vitsearch.indexer.store.store import Store

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")
from vitsearch.indexer.ray.engine import RayOptions, build_index_ray  # noqa: E402

# Each module starts a local Ray instance (~1.5 min here): the whole module runs in the slow step.
pytestmark = pytest.mark.slow

# A logical GPU: Ray schedules the embedding actor on it (torch then finds no CUDA and uses the CPU).
LOCAL = RayOptions(init_kwargs={"num_cpus": 4, "num_gpus": 1})


def photos(folder: Path, scenes=range(6)) -> Path:
    import skimage

    write_scenes(folder, scenes)
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"):
        Image.open(Path(skimage.__file__).parent / "data" / name).convert("RGB").save(
            folder / f"{Path(name).stem}.jpg", quality=90)
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


def rows(store) -> dict[str, tuple]:
    with Store(store).connect() as con:
        found = con.execute("SELECT path, status, error, embedding, pixel_hash FROM images ORDER BY path").fetchall()
    return {p: (s, e, None if v is None else np.asarray(v), h) for p, s, e, v, h in found}


def assert_same_store(ours, theirs) -> None:
    a, b = rows(ours), rows(theirs)
    assert a.keys() == b.keys()
    for path in a:
        assert a[path][0:2] == b[path][0:2], path
        assert a[path][3] == b[path][3], path  # the same decoded pixels
        if a[path][2] is not None:
            assert float(a[path][2] @ b[path][2]) >= 0.999, path


@pytest.fixture(scope="module")
def local_and_ray(tmp_path_factory, random_encoder):
    root = tmp_path_factory.mktemp("ray")
    folder = photos(root / "photos")
    build_index([folder], root / "local", encoder=random_encoder)
    report = build_index_ray([folder], root / "ray", encoder=random_encoder, options=LOCAL, shard_size=4)
    return root, folder, report


def test_the_ray_store_equals_the_local_one(local_and_ray):
    root, _, report = local_and_ray
    assert report.sent_to_cluster == 11 and report.embedded == 10 and report.failed == 1
    assert report.gpu_ids == {"0"}, "the embedding actor was placed on the (logical) GPU"
    assert_same_store(root / "ray", root / "local")
    assert_consistent(root / "ray")
    assert not list((root / "ray" / "ray-shards").glob("*")), "merged shards are removed"
    info = json.loads(run_cli("info", "--store", root / "ray", "--json").stdout)
    assert info["images"] == 10 and info["vectors"] == 10 and info["labelled"] == 10
    assert info["precision"] == report.precision and report.precision in ("bf16", "int8", "fp32"), \
        "the precision the actors chose is recorded"
    top = {}
    for store in ("ray", "local"):
        with Store(root / store).connect() as con:
            top[store] = dict(con.execute("SELECT path, labels[1] FROM images WHERE status = 'ok'").fetchall())
    assert sum(top["ray"][p] == top["local"][p] for p in top["local"]) >= 9, "labels under Ray match local ones"
    hits = run_cli("search", root / "photos" / "chelsea.jpg", "--store", root / "ray", "-k", "1")
    assert hits.returncode == 0 and hits.stdout.split("\t")[1].strip().endswith("chelsea.jpg")


def test_only_new_and_changed_files_go_to_the_cluster(local_and_ray, random_encoder):
    root, folder, _ = local_and_ray
    again = build_index_ray([folder], root / "ray", encoder=random_encoder, options=LOCAL)
    assert again.sent_to_cluster == 0 and again.embedded == 0 and again.unchanged == 11
    write_scenes(folder, range(20, 25))
    os.rename(folder / "scene-000.jpg", folder / "moved.jpg")
    shutil.copy(folder / "coffee.jpg", folder / "coffee-copy.jpg")
    added = build_index_ray([folder], root / "ray", encoder=random_encoder, options=LOCAL)
    assert added.sent_to_cluster == 5 and added.embedded == 5
    assert added.moved == 1 and added.added == 6, "the move and the copy reuse stored vectors"
    build_index([folder], root / "local", encoder=random_encoder)
    assert_same_store(root / "ray", root / "local")
    assert_consistent(root / "ray")


def test_a_killed_job_resumes_without_redoing_merged_shards(tmp_path, random_encoder):
    folder = photos(tmp_path / "photos", range(40))
    store = tmp_path / "store"
    command = [sys.executable, "-m", "vitsearch.ui.cli", "index", str(folder), "--store", str(store),
               "--weights", "random", "--engine", "ray", "--shard-size", "4"]
    # killed (SIGKILL) right after its third shard is written, before that shard is merged
    child = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, VITSEARCH_FAULT="ray_shard_written:3"))
    _, errors = child.communicate(timeout=600)
    _kill_leftover_ray(child.pid)
    assert child.returncode == -signal.SIGKILL, errors[-2000:]
    done = len(Store(store).records("id", "true"))
    leftovers = list((store / "ray-shards").glob("shard-*.parquet"))
    assert done == 8 and len(leftovers) == 1, "two shards merged, the third written but not merged"
    resumed = build_index_ray([folder], store, encoder=random_encoder, options=LOCAL, shard_size=4)
    assert resumed.unchanged == 12, "the merged shards and the leftover one are not redone"
    assert resumed.sent_to_cluster == resumed.embedded + resumed.failed == 45 - 12
    clean = tmp_path / "clean"
    build_index([folder], clean, encoder=random_encoder)
    assert_same_store(store, clean)
    assert_consistent(store)


def _kill_leftover_ray(session: int) -> None:
    """The killed driver's local Ray daemons share its session: take them down too."""
    try:
        os.killpg(session, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def test_a_simulated_cluster_places_embedding_on_the_gpu_node(tmp_path, random_encoder):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        cluster.add_node(num_cpus=2)
        gpu_node = cluster.add_node(num_cpus=2, num_gpus=1)
        cluster.wait_for_nodes()
        folder = photos(tmp_path / "photos")
        report = build_index_ray([folder], tmp_path / "store", encoder=random_encoder, shard_size=3,
                                 options=RayOptions(address=cluster.address))
        assert report.nodes == {gpu_node.node_id}, "the actor asked for a GPU: only that node has one"
        assert report.gpu_ids == {"0"} and report.embedded == 10
        assert report.decode_nodes, "decoding ran as CPU tasks somewhere in the cluster"
        build_index([folder], tmp_path / "local", encoder=random_encoder)
        assert_same_store(tmp_path / "store", tmp_path / "local")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
