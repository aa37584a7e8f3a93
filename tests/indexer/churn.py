"""Random churn of a photo tree for the targeted-sync tests: creates, overwrites, renames and moves
across folders, copies, deletes of files and of folders, folders created, renamed and moved.
Each step says what a watcher's events would name (see indexer.watch.named): the folders of the
files it touched and the folders it created, deleted or moved, whole."""

from __future__ import annotations

import io
import random
import shutil
from pathlib import Path

from vitsearch.ui.samples import make_scene


def small_photo(seed: int) -> bytes:
    buffer = io.BytesIO()
    make_scene(seed, (96, 72)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class Churn:
    """Steps of random change under `root`; each new photo's content is fresh (seeds from `first_seed`)."""

    def __init__(self, root: Path, rng: random.Random, first_seed: int = 1000):
        self.root, self.rng, self.seed = root, rng, first_seed

    def photos(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*.jpg") if p.is_file())

    def folders(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_dir()) + [self.root]

    def _new_bytes(self) -> bytes:
        self.seed += 1
        return small_photo(self.seed)

    def _name(self) -> str:
        self.seed += 1
        return f"p{self.seed}.jpg"

    def step(self) -> tuple[str, list[str], list[str]]:
        """One random change: (what it did, folders named, subtrees named)."""
        ops = [self.create, self.create, self.overwrite, self.rename, self.move_file, self.copy, self.delete,
               self.new_folder, self.move_folder, self.delete_folder, self.rename_folder]
        while True:
            done = self.rng.choice(ops)()
            if done is not None:
                return done

    def create(self):
        folder = self.rng.choice(self.folders())
        target = folder / self._name()
        target.write_bytes(self._new_bytes())
        return f"create {target}", [str(folder)], []

    def overwrite(self):
        photos = self.photos()
        if not photos:
            return None
        target = self.rng.choice(photos)
        with open(target, "wb") as f:  # in place: the folder's mtime does not change
            f.write(self._new_bytes())
        return f"overwrite {target}", [str(target.parent)], []

    def rename(self):
        photos = self.photos()
        if not photos:
            return None
        source = self.rng.choice(photos)
        target = source.parent / self._name()
        source.rename(target)
        return f"rename {source} -> {target}", [str(source.parent)], []

    def move_file(self):
        photos, folders = self.photos(), self.folders()
        if not photos:
            return None
        source, folder = self.rng.choice(photos), self.rng.choice(folders)
        target = folder / self._name()
        source.rename(target)
        return f"move {source} -> {target}", [str(source.parent), str(folder)], []

    def copy(self):
        photos, folders = self.photos(), self.folders()
        if not photos:
            return None
        source, folder = self.rng.choice(photos), self.rng.choice(folders)
        target = folder / self._name()
        shutil.copyfile(source, target)
        return f"copy {source} -> {target}", [str(folder)], []

    def delete(self):
        photos = self.photos()
        if not photos:
            return None
        target = self.rng.choice(photos)
        target.unlink()
        return f"delete {target}", [str(target.parent)], []

    def new_folder(self):
        parent = self.rng.choice([f for f in self.folders() if len(f.relative_to(self.root).parts) < 3])
        self.seed += 1
        folder = parent / f"album-{self.seed}"
        folder.mkdir()
        for _ in range(self.rng.randint(1, 3)):
            (folder / self._name()).write_bytes(self._new_bytes())
        return f"new folder {folder}", [], [str(folder)]

    def _subfolders(self) -> list[Path]:
        return [f for f in self.folders() if f != self.root]

    def move_folder(self):
        movable = self._subfolders()
        if not movable:
            return None
        source = self.rng.choice(movable)
        parents = [f for f in self.folders() if not f.is_relative_to(source)
                   and len(f.relative_to(self.root).parts) < 3]
        self.seed += 1
        target = self.rng.choice(parents) / f"moved-{self.seed}"
        source.rename(target)
        return f"move folder {source} -> {target}", [], [str(source), str(target)]

    def rename_folder(self):
        movable = self._subfolders()
        if not movable:
            return None
        source = self.rng.choice(movable)
        self.seed += 1
        target = source.parent / f"renamed-{self.seed}"
        source.rename(target)
        return f"rename folder {source} -> {target}", [], [str(source), str(target)]

    def delete_folder(self):
        doomed = self._subfolders()
        if len(doomed) < 3:
            return None  # keep a tree to churn
        target = self.rng.choice(doomed)
        shutil.rmtree(target)
        return f"delete folder {target}", [], [str(target)]


def seed_tree(root: Path, folders: int = 4, per_folder: int = 3) -> None:
    """A small tree to churn: `folders` albums (one nested) of `per_folder` photos, two at the top."""
    root.mkdir(parents=True, exist_ok=True)
    seed = 0
    for n in range(folders):
        folder = root / f"album-{n}" if n % 2 == 0 else root / f"album-{n - 1}" / f"day-{n}"
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(per_folder):
            seed += 1
            (folder / f"s{seed}.jpg").write_bytes(small_photo(seed))
    for _ in range(2):
        seed += 1
        (root / f"s{seed}.jpg").write_bytes(small_photo(seed))
