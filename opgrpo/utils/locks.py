"""Files shared by concurrent jobs (a sweep's arms on one cluster file system): atomic writes, heartbeats, stage locks.

Plain Python (no torch, no Hydra), for any layer. The protocol:

- **Atomic writes.** :func:`atomic_write_text` writes a temporary sibling and ``os.replace``-s it into place, so a
  reader sees the old file or the new one, never a torn one. :func:`publish_dir` puts a finished directory in place
  the same way (``os.rename`` on one file system; else a copy to a temporary sibling of the destination, then a
  rename). When the destination already exists, another producer won: its result is kept and ours is removed.
- **Heartbeats.** :class:`Heartbeat` rewrites a file with ``host:pid unix_time`` every few seconds from a thread.
  A reader asks :func:`beat_owner` (who) and :func:`beat_age` (how long ago, from the file's mtime, so ``touch``
  refreshes it too), and :func:`owner_alive`: the owner is gone when it ran on this host and its process has exited
  (a zombie counts as exited), or when its beat is older than ``stale_after`` seconds (another host, node loss, a
  hung or stopped process). "This host" is the host name: containers that share one but not their process ids
  must not share lock directories.
- **Stage locks.** :class:`StageLock` is a lock file created exclusively (``O_CREAT | O_EXCL`` on a temporary
  name, then ``link``-ed to the lock's name) holding ``host:pid unix_time token``; while it is held, its heartbeat
  touches it. :meth:`StageLock.acquire` checks ``ready()`` (is the output already there?), tries to create the
  file, and while another live owner holds it waits, polling and checking ``ready()``, returning False as soon as
  another job produced the thing. A lock whose owner is dead is taken over: the waiter renames it to a name of its
  own, and only the waiter whose rename moved that very lock (same inode, mtime and content as the one it judged
  dead) goes on, logs the takeover at WARNING and removes it; a waiter that moved a fresh lock instead (another
  waiter's takeover finished in between) links it back. Then the ordinary exclusive create decides who holds the
  lock, so two waiters do not both hold it (in the one race left, a live lock moved aside and replaced before it
  could be linked back, its owner learns it at its next beat, as below). An owner that was only paused (and got
  replaced) finds out at its next beat (:attr:`StageLock.lost`) and does not remove its successor's lock on
  release. A producer should :func:`publish_dir` its output, which stays correct even if two producers ever ran.

Typical use (a stage shared by the jobs of a sweep)::

    lock = StageLock(store / f"{key}.lock")
    if lock.acquire(ready=lambda: (store / key).is_dir(), on_wait=lambda o: log.info("waiting for %s", o)):
        with lock:
            produce(tmp)
            publish_dir(tmp, store / key)
    use(store / key)
"""
from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "HOST", "Heartbeat", "StageLock", "atomic_write_text", "beat_age", "beat_owner", "owner_alive", "pid_alive",
    "publish_dir",
]

log = logging.getLogger(__name__)

HOST = socket.gethostname()
"""This machine's name, as heartbeats and locks record their owner (``host:pid``)."""


def _temp_sibling(path: Path, tag: str = "tmp") -> Path:
    """A name next to ``path`` that no other process or thread picks (hidden, so directory listings skip it)."""
    return path.with_name(f".{path.name}.{tag}-{HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}")


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8", fsync: bool = True) -> Path:
    """Write ``text`` to ``path`` through a temporary sibling and ``os.replace``: readers never see a part of it.

    The file gets the mode a plain ``open(path, "w")`` would (0o666 less the umask); ``fsync`` flushes it to disk
    before the rename (off for heartbeats, which only need to be recent)."""
    path = Path(path)
    tmp = _temp_sibling(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as fh:
            fh.write(text)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _read_beat(path: str | Path) -> list[str] | None:
    """The fields of a heartbeat or lock file (``host:pid unix_time [token]``); None when absent or unreadable."""
    try:
        fields = Path(path).read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return None
    return fields or None


def beat_owner(path: str | Path) -> tuple[str, int] | None:
    """``(host, pid)`` recorded in a heartbeat or lock file; None when there is none or it cannot be parsed."""
    fields = _read_beat(path)
    if not fields:
        return None
    host, sep, pid = fields[0].rpartition(":")
    if not sep or not host or not pid.isdigit():
        return None
    return host, int(pid)


def beat_age(path: str | Path) -> float:
    """Seconds since ``path`` was last beaten (its mtime); ``math.inf`` when there is no such file.

    The file is opened before its mtime is read: on NFS an open revalidates the cached attributes (close-to-open
    consistency), where a bare ``stat`` may return ones up to a minute old."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return math.inf
    try:
        return max(0.0, time.time() - os.fstat(fd).st_mtime)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine and has not exited (a zombie, killed but not yet reaped by
    its parent, has exited)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no procfs (macOS): os.kill is all we know
        return True
    state = stat.rpartition(")")[2].split()[:1]
    return state not in (["Z"], ["X"])


def owner_alive(path: str | Path, stale_after: float) -> bool:
    """Whether the owner of a heartbeat or lock file is alive: False when the file is missing, when its owner ran on
    this host and that process is gone, or when its last beat is older than ``stale_after`` seconds.

    A file whose owner cannot be read (empty, or not written by this module) is judged by its age alone."""
    owner = beat_owner(path)
    if owner is not None and owner[0] == HOST and not pid_alive(owner[1]):
        return False
    return beat_age(path) <= stale_after


class Heartbeat:
    """A context manager that rewrites ``path`` with ``host:pid unix_time`` now and then every ``every`` seconds
    from a daemon thread, while the block runs. On exit the file is removed (``remove=True``) or left as is, so its
    age tells readers when the process stopped.

    A beat that cannot be written (full or unreachable disk) is logged at WARNING and retried at the next one; it
    never fails the work the heartbeat watches."""

    def __init__(self, path: str | Path, every: float = 10.0, *, remove: bool = True):
        if not every > 0:
            raise ValueError(f"Heartbeat every must be > 0, got {every!r}")
        self.path = Path(path)
        self.every = float(every)
        self.remove = remove
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def line(self) -> str:
        """What a beat writes."""
        return f"{HOST}:{os.getpid()} {time.time():.3f}\n"

    def beat(self) -> None:
        """Write one beat now (the parent directory is created when missing)."""
        try:
            try:
                atomic_write_text(self.path, self.line(), fsync=False)
            except FileNotFoundError:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(self.path, self.line(), fsync=False)
        except OSError as exc:
            log.warning("heartbeat %s: %s", self.path, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

    def start(self) -> Heartbeat:
        if self._thread is not None:
            raise RuntimeError(f"heartbeat {self.path} already running")
        self._stop.clear()
        self.beat()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.path.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        if self.remove:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _LockBeat(Heartbeat):
    """The heartbeat of a held :class:`StageLock`: touches the lock file (its mtime is the beat) while the file
    still holds the lock's token. Touching, not rewriting, so a beat can never overwrite a successor's lock; a beat
    that finds the file gone or someone else's marks the lock lost and stops."""

    def __init__(self, lock: StageLock):
        super().__init__(lock.path, lock.beat_every, remove=False)
        self.lock = lock

    def beat(self) -> None:
        fields = _read_beat(self.path)
        if fields is None and self.path.exists():
            return  # unreadable for a moment (a flaky network file system): judge at the next beat
        if fields is None or fields[-1] != self.lock.token:
            owner = " ".join(fields[:1]) if fields else "nobody"
            log.error("lock %s was taken from this process (now held by %s): another job may produce the same "
                      "output", self.path, owner)
            self.lock.lost = True
            self._stop.set()
            return
        try:
            os.utime(self.path)
        except OSError as exc:
            log.warning("heartbeat %s: %s", self.path, exc)


def _identity(path: Path) -> tuple | None:
    """What tells one lock file from another at the same path: inode, mtime and content (a rename keeps all three;
    the inode and mtime also tell apart empty files, which :class:`StageLock` never writes but may find)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, _read_beat(path) or []


class StageLock:
    """An exclusive lock file for producing one shared output (see the module docstring for the protocol).

    ``stale_after``: seconds without a beat after which the owner counts as dead (it must be well above
    ``beat_every``, a few beats at least, since shared file systems delay writes)."""

    def __init__(self, path: str | Path, stale_after: float = 120.0, beat_every: float = 10.0):
        if not beat_every > 0:
            raise ValueError(f"StageLock beat_every must be > 0, got {beat_every!r}")
        if not stale_after > beat_every:
            raise ValueError(f"StageLock stale_after ({stale_after!r}) must be greater than beat_every "
                             f"({beat_every!r})")
        self.path = Path(path)
        self.stale_after = float(stale_after)
        self.beat_every = float(beat_every)
        self.token = ""
        self.held = False
        self.lost = False
        """Set by the heartbeat when the lock file is gone or holds another owner's token (this process was taken
        for dead and replaced)."""
        self._beat: _LockBeat | None = None

    def __repr__(self) -> str:
        return f"StageLock({str(self.path)!r}, held={self.held})"

    def owner(self) -> str:
        """``host:pid`` of the current holder as its lock file says ("unknown" when unreadable)."""
        owner = beat_owner(self.path)
        return f"{owner[0]}:{owner[1]}" if owner else "unknown"

    def _try_create(self) -> bool:
        """Create the lock file holding our owner line, if there is none. The line is written to a temporary file
        (``O_CREAT | O_EXCL``) that is then hard-linked to the lock's name, which fails when that name exists: the
        lock appears with its content (readers never see an empty lock), and ``link`` is atomic on NFS too, as
        open(2) advises for lock files there."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        tmp = _temp_sibling(self.path, "new")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(f"{HOST}:{os.getpid()} {time.time():.3f} {token}\n")
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError:  # NFS: the link may have been made although its reply was lost
                if os.stat(tmp).st_nlink != 2:
                    raise
        finally:
            tmp.unlink(missing_ok=True)
        self.token, self.held, self.lost = token, True, False
        self._beat = _LockBeat(self)
        self._beat.start()
        return True

    def _take_over(self, judged: tuple) -> None:
        """Remove the lock file that was judged dead (``judged``: its :func:`_identity`) so that the next create can
        succeed; safe with many waiters at once, and a no-op when another waiter replaced it meanwhile."""
        moved = _temp_sibling(self.path, "stale")
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            return  # another waiter moved it first (or its owner released it)
        if _identity(moved) == judged:
            owner = " ".join(judged[2][:1]) or "unknown (empty lock file)"
            log.warning("lock %s: its owner %s is dead (last beat %.1f s ago, stale after %.0f s); taking over",
                        self.path, owner, beat_age(moved), self.stale_after)
            moved.unlink(missing_ok=True)
            return
        # We moved a fresher lock (another waiter took over in between): put it back unless a new one exists.
        try:
            os.link(moved, self.path)
        except FileExistsError:
            log.error("lock %s: moved a live lock aside and could not restore it (another lock exists)", self.path)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                log.error("lock %s: could not restore a live lock moved aside: %s", self.path, exc)
        finally:
            moved.unlink(missing_ok=True)

    def acquire(self, ready: Callable[[], bool] | None = None, poll: float = 2.0, timeout: float | None = None,
                on_wait: Callable[[str], object] | None = None) -> bool:
        """True when this process now holds the lock; False when ``ready()`` says the output already exists (it is
        checked first, at each poll while waiting, and once more right after the lock is taken, in case the last
        holder published and released in between; the lock is then released again).

        While another live owner holds the lock: wait, polling every ``poll`` seconds, calling ``on_wait(owner)``
        once when waiting starts (``owner`` is ``host:pid``). A dead owner's lock is taken over. ``timeout``
        (seconds, None = forever) raises :class:`TimeoutError` naming the owner."""
        if self.held:
            raise RuntimeError(f"{self!r} is already held by this object")
        deadline = None if timeout is None else time.monotonic() + timeout
        waiting = False
        while True:
            if ready is not None and ready():
                return False
            if self._try_create():
                try:
                    done = ready is not None and ready()
                except BaseException:  # never leave a lock held (and beating) behind an error
                    self.release()
                    raise
                if done:
                    self.release()
                    return False
                return True
            judged = _identity(self.path)  # before the liveness check: what we take over is what was judged dead
            if judged is None:
                continue  # released meanwhile
            if not owner_alive(self.path, self.stale_after):
                self._take_over(judged)
                continue
            if not waiting:
                waiting = True
                if on_wait is not None:
                    on_wait(self.owner())
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"lock {self.path}: still held by {self.owner()} after {timeout} s")
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file, unless it is no longer ours (:attr:`lost`)."""
        if not self.held:
            return
        if self._beat is not None:
            self._beat.stop()
            self._beat = None
        fields = _read_beat(self.path)
        if fields and fields[-1] == self.token:
            self.path.unlink(missing_ok=True)
        else:
            self.lost = True
        self.held = False

    def __enter__(self) -> StageLock:
        if not self.held:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def publish_dir(src: str | Path, dst: str | Path) -> Path:
    """Put the finished directory ``src`` at ``dst`` in one step and return ``dst``.

    ``os.rename`` when both are on one file system; else a copy to a temporary sibling of ``dst``, renamed into
    place, and ``src`` removed. When ``dst`` already exists (another producer won), ``dst`` is kept and ``src``
    removed. Readers thus see no ``dst`` or a complete one."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise NotADirectoryError(f"publish_dir: {src} is not a directory")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        log.info("%s already published by another job; dropping %s", dst, src)
        shutil.rmtree(src)
        return dst
    try:
        os.rename(src, dst)
        return dst
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            log.info("%s published by another job meanwhile; dropping %s", dst, src)
            shutil.rmtree(src)
            return dst
        if exc.errno != errno.EXDEV:
            raise
    tmp = _temp_sibling(dst)
    try:
        shutil.copytree(src, tmp, symlinks=True)
        os.rename(tmp, dst)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not dst.exists():
            raise
        log.info("%s published by another job meanwhile; dropping %s", dst, src)
    shutil.rmtree(src)
    return dst
