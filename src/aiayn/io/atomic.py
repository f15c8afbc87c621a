"""Atomic file writes: a temporary file, flushed, then renamed, so a file is never left half-written."""

from __future__ import annotations

import errno
import glob
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

_UMASK = os.umask(0)
os.umask(_UMASK)


class WriteError(OSError):
    """A file that could not be written (full disk, no permission); the previous version is left as it was."""

    def __str__(self) -> str:
        """The message alone (no "[Errno N]" prefix)."""
        return str(self.strerror)


def atomic_write(path: Path, write: Any) -> None:
    """Call write(tmp_path) then rename tmp_path onto path, so path is never half-written.

    A failed write (e.g. a full disk) removes the temporary file, leaves any older `path` untouched and
    raises WriteError naming the file, the cause and the fix.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as error:
        raise as_write_error(path, error) from None
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give them the usual permissions
        _fsync(Path(tmp))  # the bytes reach the disk before the name does: a power cut leaves old or new
        os.replace(tmp, path)
        _fsync(path.parent)  # and the rename itself
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        io_error = _as_os_error(error)
        if io_error is not None:
            raise as_write_error(path, io_error) from None
        raise
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by an earlier killed write
        stale.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk; a file system that cannot is skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _as_os_error(error: BaseException) -> OSError | None:
    """The OSError behind a failed write, also when a library reports it as its own type; else None.

    safetensors raises SafetensorError("... I/O error: No space left on device (os error 28)"); torch.save
    raises RuntimeError("[enforce fail at inline_container.cc] ... unexpected pos ...") without the cause.
    """
    if isinstance(error, WriteError):
        return None
    if isinstance(error, OSError):
        return error
    text = str(error)
    if isinstance(error, SafetensorError) and (found := re.search(r"os error (\d+)", text)):
        code = int(found.group(1))
        return OSError(code, os.strerror(code))
    if isinstance(error, (SafetensorError, RuntimeError)) and re.search(
            r"I/O error|inline_container|file write failed|unexpected pos", text):
        return OSError(errno.EIO, f"the write failed part-way ({text[:100]}), most often a full disk")
    return None


def as_write_error(path: Path, error: OSError) -> WriteError:
    """A WriteError naming the file, the operating system's reason and what to do."""
    reason = error.strerror or str(error)
    kept = "; the previous version is unchanged" if path.exists() else ""
    fix = ("free some disk space or write elsewhere" if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG,
                                                                      errno.EIO)
           else "check the folder exists and is writable, or write elsewhere")
    return WriteError(error.errno, f"could not write {path}: {reason}{kept}. {fix.capitalize()}, then try again")


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
