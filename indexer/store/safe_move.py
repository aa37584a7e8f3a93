"""Moving one user file without ever losing it, and telling which side of a half-done move holds
the intact bytes.

A move within a file system is one rename. Across file systems it is: copy to a hidden partial
name beside the target, fsync the copy and its folder, rename it to the final name, read it back
and check its hash, and only then unlink the source. A kill at any instant therefore leaves the
complete original at the source, a complete verified copy at the target, or both; never a
truncated file under a final name. The rules are written out in docs/safety.md."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import shutil
from dataclasses import dataclass

from ..faults import fault_point

__all__ = ["MoveError", "Expected", "move_file", "rename_no_replace", "file_digest", "copy_synced", "is_intact",
           "is_partial_copy_of", "partial_path", "remove_partial", "fsync_folder"]

CHUNK = 1 << 20
PARTIAL_SUFFIX = ".vitsearch-partial"
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1


def _load_renameat2():
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None  # not Linux, or a C library before glibc 2.28
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


_renameat2 = _load_renameat2()


class MoveError(Exception):
    """A file that could not move; nothing was lost or overwritten. The message says why."""


@dataclass(frozen=True)
class Expected:
    """What the file being moved must be: its size and content hash (the store's content_hash,
    blake2b-128 of the whole file; None skips the hash check)."""

    size: int
    digest: str | None


def file_digest(path: str) -> str:
    """The hash the indexer records as content_hash, read in chunks."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_intact(path: str, expected: Expected) -> bool:
    """The file at `path` is the one that was moved: a regular file of its size and hash."""
    try:
        if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) != expected.size:
            return False
        return expected.digest is None or file_digest(path) == expected.digest
    except OSError:
        return False


def is_partial_copy_of(path: str, intact: str) -> bool:
    """`path` is shorter than `intact` and holds exactly its first bytes: what a copy killed
    half-way leaves. Anything else there is somebody's file."""
    try:
        size = os.path.getsize(path)
        if os.path.islink(path) or size >= os.path.getsize(intact):
            return False
        with open(path, "rb") as a, open(intact, "rb") as b:
            while chunk := a.read(CHUNK):
                if b.read(len(chunk)) != chunk:
                    return False
        return True
    except OSError:
        return False


def partial_path(target: str) -> str:
    """The hidden name a copy is written under before it is complete (scans skip hidden files)."""
    folder, name = os.path.split(target)
    return os.path.join(folder, f".{name}{PARTIAL_SUFFIX}")


def remove_partial(target: str) -> None:
    """Remove what a killed copy towards `target` left under its partial name."""
    try:
        os.unlink(partial_path(target))
    except FileNotFoundError:
        pass


def move_file(source: str, target: str, expected: Expected) -> None:
    """Move `source` to `target`, never overwriting and never leaving a truncated file under a
    final name. Raises MoveError (with nothing lost) when it cannot."""
    if os.path.lexists(target):
        raise MoveError(f"{target} already exists; nothing was overwritten")
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        rename_no_replace(source, target)
    except OSError as e:
        if e.errno == errno.EEXIST:
            raise MoveError(f"{target} already exists; nothing was overwritten") from None
        if e.errno != errno.EXDEV:
            raise MoveError(f"could not move: {e.strerror or e}") from None
        _copy_then_unlink(source, target, expected)
        return
    fsync_folder(os.path.dirname(target))
    fsync_folder(os.path.dirname(source))


def rename_no_replace(source: str, target: str) -> None:
    """rename(2) that fails with EEXIST instead of replacing a file that appeared at `target`
    (Linux's renameat2 RENAME_NOREPLACE); where that is missing, a check just before the rename."""
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # else: this file system lacks it
            raise OSError(code, os.strerror(code), target)
    if os.path.lexists(target):
        raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), target)
    os.rename(source, target)


def _copy_then_unlink(source: str, target: str, expected: Expected) -> None:
    partial = partial_path(target)
    try:
        before = os.stat(source)
        digest = copy_synced(source, partial)
        if expected.digest is not None and digest != expected.digest:
            os.unlink(partial)
            raise MoveError("file changed since it was indexed: run `vitsearch index` first")
        shutil.copystat(source, partial)  # the modification time travels with the photo
        fsync_folder(os.path.dirname(target))
        fault_point("move_copied")
        try:
            rename_no_replace(partial, target)
        except FileExistsError:
            os.unlink(partial)
            raise MoveError(f"{target} already exists; nothing was overwritten") from None
        fsync_folder(os.path.dirname(target))
        fault_point("move_renamed")
        after = os.stat(source)
        if file_digest(target) != digest or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            os.unlink(target)  # our own copy, not what the source holds now: the original stays
            raise MoveError(f"{source} changed while it was being copied, or the copy does not read back; "
                            "the original stays")
        try:
            os.unlink(source)
        except OSError as e:
            os.unlink(target)  # the source must stay, so our copy goes: one file, where it was
            raise MoveError(f"could not remove the original after copying it: {e.strerror or e}") from None
        fsync_folder(os.path.dirname(source))
    except OSError as e:
        remove_partial(target)
        raise MoveError(f"could not copy across file systems: {e.strerror or e}") from None


def copy_synced(source: str, destination: str) -> str:
    """Copy bytes, fsync them, and return the hash of what was read."""
    digest = hashlib.blake2b(digest_size=16)
    with open(source, "rb") as src, open(destination, "wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return digest.hexdigest()


def fsync_folder(folder: str) -> None:
    """Make a rename or unlink in `folder` durable."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename itself is still atomic
    finally:
        os.close(fd)
