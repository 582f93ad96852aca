"""Writing files so that a crash or a signal never leaves a half-written one under the real name,
and two writers never silently replace each other's file."""
from __future__ import annotations

import errno
import os
import tempfile


def _process_umask() -> int:
    """The umask, read once at import: os.umask can only be read by setting it, and setting it to 0 while
    other threads create files would give those files the wrong permissions."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


UMASK = _process_umask()


def atomic_write(path, write, overwrite: bool = True) -> None:
    """Call write(tmp_path) on a temporary file beside path, then publish it under path.

    overwrite=True replaces whatever is there (a rename). overwrite=False publishes only if path does
    not exist at that moment (a hard link, which the file system creates exclusively), so of two
    processes writing the same output one succeeds and the other gets FileExistsError.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~UMASK)
        if overwrite:
            os.replace(tmp, path)
        else:
            _publish_exclusive(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _publish_exclusive(tmp: str, path: str) -> None:
    try:
        os.link(tmp, path)          # fails with EEXIST if path exists, atomically
    except OSError as e:
        if e.errno == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "exists", path) from None
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # No hard links here (some network and FAT file systems): claim the name first, then fill it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.close(fd)
        os.replace(tmp, path)
