"""Writing files safely: atomic writes, output folders checked before the work, and run locks.

Every writer of napari-hrtem leaves either the old state or the complete new state on disk, never a
partial file: it writes to a temporary file in the same folder (:func:`temporary_path`: a hidden
name with the process id and a random part, so that concurrent writers never share one), flushes it
to disk and renames it over the final name (:func:`write_atomic`). A failure (a full disk, a
read-only folder) removes the temporary file and raises :class:`WriteError`, whose message names the
file.

Two runs writing the same output folder or dataset store are kept apart by a lock file,
``.napari-hrtem.lock`` (:class:`RunLock`), created with ``O_EXCL`` and holding the process id, host
and command of the run. A second run is refused with a message naming the first; the lock of a run
that died (its process is gone) is taken over, with a note.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import socket
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

#: The lock file of a run, inside the folder or store it writes.
LOCK_NAME = ".napari-hrtem.lock"
#: Temporary files of the atomic writers: ``.<name>.<random or pid-random>.tmp``.
TEMPORARY = re.compile(r"^\..+\.(?:\d+-)?[0-9a-f]{8}\.tmp$")


class WriteError(OSError):
    """A file could not be written; ``str()`` is one line naming the file and the reason."""

    reason: str = ""

    def __str__(self) -> str:
        return str(self.strerror)


def write_error(path: str | os.PathLike[str], exc: BaseException) -> WriteError:
    """A :class:`WriteError` for ``path`` from the error ``exc`` (its errno kept)."""
    if isinstance(exc, WriteError) and exc.filename == str(path):
        return exc
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    code = getattr(exc, "errno", None) or errno.EIO
    error = WriteError(code, f"{path}: cannot be written ({reason})", str(path))
    error.reason = reason
    return error


def temporary_path(path: str | os.PathLike[str]) -> Path:
    """A new temporary name beside ``path``: ``.<name>.<pid>-<random>.tmp`` (unique across processes)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (the renames in it) to disk, where the system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], content: bytes | str | Callable[[IO[bytes]], Any]) -> Path:
    """Write ``content`` (bytes, text as UTF-8, or a function writing into a binary file) to ``path``
    atomically: temporary file in the same folder, flush, fsync, rename. Returns ``path``.

    Raises
    ------
    WriteError
        When the file cannot be written (full disk, no permission, ...): the message names ``path``;
        the old file (if any) is untouched and no temporary file is left.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with open(tmp, "xb") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode("utf-8") if isinstance(content, str) else content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        raise write_error(path, exc) from exc
    except BaseException:
        _unlink(tmp)
        raise
    fsync_folder(path.parent)
    return path


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_path(out: str | os.PathLike[str] | None, what: str = "output folder", folder: bool = True) -> Path:
    """Check that ``out`` can be written before any work is done; returns it as a Path.

    ``folder``: ``out`` is a folder (it must not be a file, and it must be creatable or writable);
    otherwise a file (it must not be a folder, and its folder must exist and be writable).

    Raises
    ------
    ValueError
        On an empty name, a file where a folder is wanted (or the other way round), or a place that
        cannot be created or written; the message names the path.
    """
    if out is None or not str(out).strip():
        raise ValueError(f"the {what} is an empty name: give a path (use . for the current folder)")
    path = Path(out)
    if path.exists():
        if folder and not path.is_dir():
            raise ValueError(f"{path}: is a file, not a folder; give a folder as the {what}")
        if not folder and path.is_dir():
            raise ValueError(f"{path}: is a folder; give a file name as the {what}")
    base = path if folder and path.is_dir() else _nearest_existing(path if folder else path.parent)
    if not folder and base != path.parent.absolute():
        raise ValueError(f"{path}: its folder {path.parent} does not exist")
    if not base.is_dir():
        raise ValueError(f"{path}: cannot be created: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: cannot be written: {base} is not writable")
    return path


def check_not_input(out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], what: str) -> None:
    """Refuse an output file that is one of the input files (same file, by path or by inode).

    Raises
    ------
    ValueError
        Naming the file: it would be overwritten by the output.
    """
    out_path = Path(out)
    for item in inputs:
        item = Path(item)
        same = out_path.absolute() == item.absolute()
        if not same and out_path.exists() and item.exists():
            try:
                same = os.path.samefile(out_path, item)
            except OSError:
                same = False
        if same:
            raise ValueError(
                f"{out_path}: is an input file; it would be overwritten by the {what}: choose another name"
            )


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


#: Locks held: (process id, path) -> count (a lock is re-entrant within one process, not in a forked child).
_HELD: dict[tuple[int, str], int] = {}


class RunLock:
    """A lock file in ``folder`` for one run (``with RunLock(folder, "predict"):``).

    The folder is made if needed (and removed again on release when this lock made it and it is
    still empty). The lock is ``folder/.napari-hrtem.lock``, created with ``O_CREAT | O_EXCL``,
    holding ``{"pid", "host", "command", "what"}``. A lock held by a live process refuses with a
    :class:`ValueError` naming that run; a lock whose process is gone (same host) is taken over and
    :attr:`note` says so. Within one process the lock is re-entrant.
    """

    def __init__(self, folder: str | os.PathLike[str], what: str):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_NAME
        self.note: str | None = None
        self._made_folder = False
        self._path = str(self.path.absolute())

    @property
    def _key(self) -> tuple[int, str]:
        return os.getpid(), self._path

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        key = self._key
        if _HELD.get(key):
            _HELD[key] += 1
            return
        if not self.folder.exists():
            try:
                self.folder.mkdir(parents=True)
                self._made_folder = True
            except FileExistsError:
                pass
            except OSError as exc:
                raise write_error(self.folder, exc) from exc
        record = dict(
            pid=os.getpid(), host=socket.gethostname(), what=self.what, command=" ".join(sys.argv[:1] + sys.argv[1:])
        )
        for attempt in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self._read()
                if attempt == 0 and self._stale(other):
                    self.note = (
                        f"{self.folder}: took over the lock of an earlier {other.get('what', 'napari-hrtem')} run "
                        f"(process {other.get('pid')}, no longer running)"
                    )
                    _unlink(self.path)
                    continue
                self._cleanup_folder()
                raise ValueError(
                    f"{self.folder}: another napari-hrtem {other.get('what', 'run')} (process {other.get('pid', '?')} "
                    f"on {other.get('host', '?')}) is writing here; wait for it to finish, or delete {self.path} if "
                    "it is no longer running"
                ) from None
            except OSError as exc:
                self._cleanup_folder()
                raise write_error(self.folder, exc) from exc
            try:
                os.write(fd, (json.dumps(record) + "\n").encode())
            except OSError as exc:
                os.close(fd)
                _unlink(self.path)
                self._cleanup_folder()
                raise write_error(self.path, exc) from exc
            os.close(fd)
            _HELD[self._key] = 1
            return

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _stale(other: dict) -> bool:
        pid = other.get("pid")
        if not isinstance(pid, int) or other.get("host") != socket.gethostname():
            return False  # unreadable, or another machine's run: not ours to judge
        return not _process_alive(pid)

    def _cleanup_folder(self) -> None:
        if self._made_folder:
            try:
                self.folder.rmdir()
            except OSError:
                pass
            self._made_folder = False

    def release(self) -> None:
        count = _HELD.get(self._key, 0)
        if count > 1:
            _HELD[self._key] = count - 1
            return
        _HELD.pop(self._key, None)
        if count:
            _unlink(self.path)
        self._cleanup_folder()
