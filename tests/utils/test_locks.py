"""opgrpo.utils.locks with real processes and files: heartbeats, atomic writes, StageLock contention (one producer,
the others reuse), takeover of a dead (SIGKILL) or silent (SIGSTOP) owner's lock by exactly one waiter, and
publish_dir on one file system, across two, and when another producer won."""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import opgrpo.utils.locks as lockmod
from opgrpo.utils.locks import (
    HOST,
    Heartbeat,
    StageLock,
    atomic_write_text,
    beat_age,
    beat_owner,
    owner_alive,
    pid_alive,
    publish_dir,
)

ROOT = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent("""
    import json, logging, os, sys, time
    from pathlib import Path
    from opgrpo.utils.locks import StageLock, publish_dir

    mode, work, stale_after, beat_every, produce_s = sys.argv[1], Path(sys.argv[2]), *map(float, sys.argv[3:6])
    n_waiters = int(sys.argv[6])
    warnings = []

    class Keep(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())

    logging.getLogger("opgrpo.utils.locks").addHandler(Keep(level=logging.WARNING))
    lock = StageLock(work / "stage.lock", stale_after=stale_after, beat_every=beat_every)
    if mode == "hold":  # hold the lock until it is taken away, then release it
        lock.acquire()
        print("held", flush=True)
        while not lock.lost:
            time.sleep(0.02)
        lock.release()
        print("lost", flush=True)
        sys.exit(0)
    (work / f"started-{os.getpid()}").touch()
    while not (work / "go").exists():
        time.sleep(0.005)
    out, waited = work / "out", []

    def on_wait(owner):
        waited.append(owner)
        (work / f"waiting-{os.getpid()}").touch()

    held = lock.acquire(ready=out.is_dir, poll=0.05, on_wait=on_wait)
    t0 = t1 = None
    if held:
        t0 = time.time()
        tmp = work / f"tmp-{os.getpid()}"
        tmp.mkdir()
        deadline = time.time() + 10
        while len(list(work.glob("waiting-*"))) < n_waiters and time.time() < deadline:
            time.sleep(0.01)  # produce while the others wait
        time.sleep(produce_s)
        (tmp / "who").write_text(str(os.getpid()))
        publish_dir(tmp, out)
        t1 = time.time()
        lock.release()
    print(json.dumps({"pid": os.getpid(), "held": held, "waited": waited, "t0": t0, "t1": t1,
                      "warnings": warnings}), flush=True)
""")


def _spawn(mode: str, work: Path, stale_after=5.0, beat_every=0.1, produce_s=0.2, n_waiters=0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", WORKER, mode, str(work), str(stale_after), str(beat_every),
                             str(produce_s), str(n_waiters)], stdout=subprocess.PIPE, text=True, env=env)


def _contend(work: Path, n: int, **kw) -> list[dict]:
    """Start ``n`` producers, release them at once, and return what each did (the one that gets the lock produces
    once the ``n - 1`` others are waiting)."""
    procs = [_spawn("produce", work, n_waiters=n - 1, **kw) for _ in range(n)]
    deadline = time.time() + 10
    while len(list(work.glob("started-*"))) < n:
        assert time.time() < deadline, "workers did not start"
        time.sleep(0.01)
    (work / "go").touch()
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=15)
        assert p.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _hold(work: Path, **kw) -> subprocess.Popen:
    p = _spawn("hold", work, **kw)
    assert p.stdout.readline().strip() == "held"
    return p


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _until(check, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, "condition not met in time"
        time.sleep(0.02)


def _leftovers(work: Path) -> list[str]:
    return sorted(p.name for p in work.iterdir() if p.name.startswith("."))


def test_heartbeat_owner_age_and_liveness(tmp_path):
    path = tmp_path / "run" / ".heartbeat"
    assert beat_age(path) == math.inf and beat_owner(path) is None and not owner_alive(path, 60)
    with Heartbeat(path, every=0.05):
        assert beat_owner(path) == (HOST, os.getpid())
        host_pid, stamp = path.read_text().split()
        assert host_pid == f"{HOST}:{os.getpid()}" and abs(float(stamp) - time.time()) < 5
        old = time.time() - 100
        os.utime(path, (old, old))
        _until(lambda: beat_age(path) < 5)  # rewritten by the thread
        assert owner_alive(path, 60)
    assert not path.exists()  # removed on exit by default
    with Heartbeat(path, every=10, remove=False):
        pass
    assert beat_owner(path) == (HOST, os.getpid())  # left for readers: its age says when the process stopped
    old = time.time() - 100
    os.utime(path, (old, old))
    assert 99 < beat_age(path) < 110 and not owner_alive(path, 60) and owner_alive(path, 200)

    # another host: judged by the age only; this host: a process that is gone is dead however fresh its beat
    path.write_text("node-42:123 1.0\n")
    assert beat_owner(path) == ("node-42", 123) and owner_alive(path, 60)
    pid = _dead_pid()
    assert not pid_alive(pid)
    path.write_text(f"{HOST}:{pid} {time.time()}\n")
    assert not owner_alive(path, 60)
    path.write_text("garbage\n")
    assert beat_owner(path) is None and owner_alive(path, 60)  # unreadable owner: by its age
    with pytest.raises(ValueError, match="every"):
        Heartbeat(path, every=0)


def test_pid_alive_counts_an_unreaped_zombie_as_dead():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 10
    while Path(f"/proc/{p.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.time() < deadline
        time.sleep(0.01)
    try:
        os.kill(p.pid, 0)  # a signal still reaches it: os.kill alone would call it alive
        assert not pid_alive(p.pid)
    finally:
        p.wait()
    assert pid_alive(os.getpid())


def test_atomic_write_text(tmp_path):
    path = tmp_path / "manifest.json"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second ✓")
    assert path.read_text(encoding="utf-8") == "second ✓"
    assert os.listdir(tmp_path) == ["manifest.json"]  # no temporary file left
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(FileNotFoundError):
        atomic_write_text(tmp_path / "missing" / "x", "y")
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_one_process_produces_the_others_wait_and_reuse(tmp_path):
    results = _contend(tmp_path, 3)
    producers = [r for r in results if r["held"]]
    assert len(producers) == 1, results
    producer = producers[0]
    assert (tmp_path / "out" / "who").read_text() == str(producer["pid"])
    for r in results:
        if not r["held"]:
            assert r["waited"] == [f"{HOST}:{producer['pid']}"]  # on_wait once, naming the holder
    assert not any(r["warnings"] for r in results)
    assert not (tmp_path / "stage.lock").exists() and _leftovers(tmp_path) == []
    assert not list(tmp_path.glob("tmp-*"))


def test_sigkilled_owner_is_replaced(tmp_path, caplog):
    owner = _hold(tmp_path, beat_every=0.1)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    lock = StageLock(tmp_path / "stage.lock", stale_after=30, beat_every=0.1)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="opgrpo.utils.locks"):
        assert lock.acquire(poll=0.05, timeout=5)
    assert time.monotonic() - start < 5  # its process is gone from this host: no need to wait for stale_after (30)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert f"{HOST}:{owner.pid} is dead" in caplog.text
    assert beat_owner(lock.path) == (HOST, os.getpid())
    lock.release()
    assert not lock.path.exists() and _leftovers(tmp_path) == []


def test_silent_owner_is_replaced_after_stale_after_and_learns_it_lost(tmp_path, caplog):
    owner = _hold(tmp_path, beat_every=0.1)
    try:
        os.kill(owner.pid, signal.SIGSTOP)  # alive but silent, as a hung job or one on a lost node
        stopped = time.monotonic()
        lock, waited = StageLock(tmp_path / "stage.lock", stale_after=1.0, beat_every=0.1), []
        with caplog.at_level(logging.WARNING, logger="opgrpo.utils.locks"):
            assert lock.acquire(poll=0.05, timeout=10, on_wait=waited.append)
        assert waited == [f"{HOST}:{owner.pid}"]
        assert 0.8 < time.monotonic() - stopped < 5
        assert f"{HOST}:{owner.pid} is dead" in caplog.text
        os.kill(owner.pid, signal.SIGCONT)
        out, _ = owner.communicate(timeout=10)
        assert out.split() == ["lost"]  # its next beat found our lock, and its release left it alone
        assert beat_owner(lock.path) == (HOST, os.getpid()) and lock.held and not lock.lost
        lock.release()
        assert not lock.path.exists()
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


@pytest.mark.parametrize("dead", ["pid gone", "empty and old", "other host, old"])
def test_waiters_facing_one_dead_lock_only_one_takes_over(tmp_path, dead):
    path = tmp_path / "stage.lock"
    if dead == "pid gone":
        path.write_text(f"{HOST}:{_dead_pid()} {time.time()} tok\n")
    else:
        path.write_text("" if dead == "empty and old" else "node-42:123 1.0 tok\n")
        old = time.time() - 60
        os.utime(path, (old, old))
    results = _contend(tmp_path, 4, stale_after=5.0)
    producers = [r for r in results if r["held"]]
    assert len(producers) == 1, results
    warnings = [w for r in results for w in r["warnings"]]
    assert len(warnings) == 1 and "taking over" in warnings[0], warnings
    assert (tmp_path / "out" / "who").read_text() == str(producers[0]["pid"])
    assert all(r["waited"] == [f"{HOST}:{producers[0]['pid']}"] for r in results if not r["held"]), results
    assert not path.exists() and _leftovers(tmp_path) == []


def test_a_late_waiter_does_not_remove_the_lock_another_waiter_took_over(tmp_path, caplog):
    """The interleaving the stress test above can only hit by chance, in order: waiter B judges the dead lock, waiter
    A takes it over and holds a fresh one, then B acts on its judgement. B must leave A's lock in place."""
    path = tmp_path / "stage.lock"
    path.write_text(f"{HOST}:{_dead_pid()} {time.time()} tok\n")
    a, b = (StageLock(path, stale_after=5, beat_every=0.1) for _ in range(2))
    judged_by_b = lockmod._identity(path)
    assert not owner_alive(path, b.stale_after)
    with caplog.at_level(logging.WARNING, logger="opgrpo.utils.locks"):
        assert a.acquire(poll=0.05, timeout=5)
        b._take_over(judged_by_b)
    assert len(caplog.records) == 1  # A's takeover only
    assert path.read_text().split()[-1] == a.token  # restored in place
    with pytest.raises(TimeoutError):
        b.acquire(poll=0.05, timeout=0.2)
    time.sleep(0.25)
    assert not a.lost and _leftovers(tmp_path) == []
    a.release()
    assert not path.exists()


def test_acquire_ready_timeout_and_context_manager(tmp_path):
    path = tmp_path / "stage.lock"
    lock = StageLock(path, stale_after=5, beat_every=0.1)
    assert not lock.acquire(ready=lambda: True) and not path.exists()  # output already there: no lock taken
    answers = iter([False, True])  # published by the last holder between our check and our create
    assert not lock.acquire(ready=lambda: next(answers)) and not path.exists() and not lock.held

    def broken():
        if path.exists():
            raise OSError("store unreachable")
        return False

    with pytest.raises(OSError, match="unreachable"):
        lock.acquire(ready=broken)
    assert not path.exists() and not lock.held  # an error after the create leaves no lock behind
    with lock:
        assert beat_owner(path) == (HOST, os.getpid()) and lock.held
        old = time.time() - 100
        os.utime(path, (old, old))
        _until(lambda: beat_age(path) < 5)  # the heartbeat keeps it fresh
        other = StageLock(path, stale_after=5, beat_every=0.1)
        with pytest.raises(TimeoutError, match=f"held by {HOST}:{os.getpid()}"):
            other.acquire(poll=0.05, timeout=0.3)
        with pytest.raises(RuntimeError, match="already held"):
            lock.acquire()
    assert not path.exists() and not lock.held

    # a live owner on another host (fresh lock): wait, then time out naming it
    path.write_text("node-42:123 1.0 tok\n")
    with pytest.raises(TimeoutError, match="node-42:123"):
        StageLock(path, stale_after=5, beat_every=0.1).acquire(poll=0.05, timeout=0.2)
    with pytest.raises(ValueError, match="stale_after"):
        StageLock(path, stale_after=1, beat_every=2)


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}


def _make(src: Path, tag: str) -> Path:
    (src / "sub").mkdir(parents=True)
    (src / "model.txt").write_text(tag)
    (src / "sub" / "manifest.json").write_text(json.dumps({"by": tag}))
    return src


def test_publish_dir_same_file_system_and_existing_dst(tmp_path):
    src, dst = _make(tmp_path / "work" / "tmp-1", "first"), tmp_path / "store" / "ab12"
    inode = src.stat().st_ino
    assert publish_dir(src, dst) == dst
    assert not src.exists() and dst.stat().st_ino == inode  # renamed, not copied
    assert _tree(dst) == {"model.txt": "first", "sub/manifest.json": '{"by": "first"}'}
    late = _make(tmp_path / "work" / "tmp-2", "second")
    assert publish_dir(late, dst) == dst  # another producer won: its result stays, ours goes
    assert not late.exists() and _tree(dst)["model.txt"] == "first"
    assert sorted(os.listdir(tmp_path / "store")) == ["ab12"]
    with pytest.raises(NotADirectoryError):
        publish_dir(tmp_path / "work" / "nothing", tmp_path / "store" / "cd34")


def test_publish_dir_across_file_systems(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system than the test's tmp_path")
    src = _make(shm / f"opgrpo-test-{os.getpid()}-{time.time_ns()}", "copied")
    try:
        dst = tmp_path / "store" / "ab12"
        assert publish_dir(src, dst) == dst
        assert not src.exists()
        assert _tree(dst) == {"model.txt": "copied", "sub/manifest.json": '{"by": "copied"}'}
        assert os.listdir(tmp_path / "store") == ["ab12"]  # the temporary copy was renamed into place
        again = _make(src, "again")
        assert publish_dir(again, dst) == dst and not again.exists() and _tree(dst)["model.txt"] == "copied"
    finally:
        import shutil

        shutil.rmtree(src, ignore_errors=True)
