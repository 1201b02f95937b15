"""Content hashes for what the project writes and later reads back: checkpoints, final models,
run records (`done.json`) and evaluation caches.

A folder's files are listed with their SHA-256 in `<folder>/SHA256SUMS` (the `sha256sum`
format, so `cd <folder> && sha256sum -c SHA256SUMS` checks it by hand), written atomically after
the files themselves. `verify_folder` re-hashes them on read: a flipped bit, a truncated or
missing file is an `IntegrityError` naming the file, and nothing that fails is used.

A folder without SHA256SUMS was written by older code: `verify_folder` then returns False and
the caller decides (the trainer and the registry warn, naming the folder, and go on).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

SUMS_NAME = "SHA256SUMS"
_CHUNK = 1 << 20


class IntegrityError(ValueError):
    """A file whose content is not what was written: its hash, size or presence differs."""


def write_atomic_bytes(path: Path, data: bytes) -> None:
    """Replace `path` by `data` in one step (fsync'ed temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _listed(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SUMS_NAME and not p.name.endswith(".tmp"))


def write_sums(folder: Path) -> str:
    """Hash every file under `folder` into `<folder>/SHA256SUMS` (atomic); returns the hash of
    SHA256SUMS itself, which a record of the folder (done.json) keeps to pin this exact content."""
    folder = Path(folder)
    lines = "".join(f"{file_sha256(p)}  {p.relative_to(folder).as_posix()}\n" for p in _listed(folder))
    write_atomic_bytes(folder / SUMS_NAME, lines.encode("utf-8"))
    return text_sha256(lines)


def sums_digest(folder: Path) -> str | None:
    """The hash of `<folder>/SHA256SUMS` (None when there is none)."""
    path = Path(folder) / SUMS_NAME
    return file_sha256(path) if path.is_file() else None


def verify_folder(folder: Path) -> bool:
    """Check every file `<folder>/SHA256SUMS` lists: True when all match, False when the folder
    has no SHA256SUMS (older code). IntegrityError, naming the file, on any difference."""
    folder = Path(folder)
    sums = folder / SUMS_NAME
    if not sums.is_file():
        return False
    try:
        text = sums.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise IntegrityError(f"{sums}: unreadable ({error})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise IntegrityError(f"{sums} line {number}: not a '<sha256>  <file>' line")
        path = folder / name
        if not path.is_file():
            raise IntegrityError(f"{path} is missing (listed in {sums})")
        if file_sha256(path) != digest:
            raise IntegrityError(f"{path} does not match its SHA-256 in {sums}: the file was altered or cut short")
    return True
