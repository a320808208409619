"""Files that survive a crash: atomic writes (temp file + rename) and an append-and-flush JSON-lines log.

A write that fails (a full disk, a read-only mount) raises `WriteError`: one line with the path, the bytes
needed, the bytes free and the fix, which the entry points print as their `error:` line.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Calls `write(file)` on a temporary file, then renames it to `path`: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files owner-only; give them the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class WriteError(OSError):
    """A run's file or checkpoint could not be written; the message says where, how much and what to do."""


def write_error(path: str | os.PathLike, size: int, code: int | None) -> WriteError:
    """The one-line error of a failed write of `size` bytes to `path`, `code` its errno (None: unknown)."""
    existing = Path(path).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    full = code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    remedy = "free space there" if full else "make it writable"
    return WriteError(
        f"could not write {path} ({os.strerror(code) if code else 'write failed'}): {size:,} bytes needed, "
        f"{free:,} free there; {remedy} or choose another --workdir, then continue with --resume"
    )


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """`atomic_write` of `data`; `WriteError` if it cannot be written."""
    try:
        atomic_write(path, lambda f: f.write(data))
    except OSError as error:
        raise write_error(path, len(data), error.errno) from error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """`atomic_write_bytes` of `obj` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Appends one JSON line and flushes it to disk, so a crash loses at most the line being written (a line
    torn by a full disk is dropped by `read_jsonl`); `WriteError` if it cannot be written."""
    line = json.dumps(record, sort_keys=True) + "\n"
    try:
        with open(path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as error:
        raise write_error(path, len(line.encode()), error.errno) from error


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All complete records of a JSON-lines file; a torn last line (from a crash) is dropped."""
    records = []
    path = Path(path)
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Replaces a JSON-lines file atomically (used to drop epochs past a resumed checkpoint)."""
    atomic_write_bytes(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode())
