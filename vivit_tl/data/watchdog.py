"""Decoding under a watchdog: a decode that does not return in time is stopped, not waited for.

A decoder can hang inside native code while holding the GIL (decord's known hangs spin in FFmpeg
calls), so no thread of the hung process can time it out. :func:`call_with_timeout` therefore runs
the decodes of each process (a DataLoader worker, or the main process with ``num_workers: 0``) in
one helper process of its own, forked on first use and reused for every decode. The caller waits at
most ``timeout`` seconds for each answer; then it kills the helper (a fresh one is forked for the
next decode) and raises ``ReadError(path, "decode timed out")``, which the dataset treats like any
bad file. A helper that dies (a decoder crash) is a ``"decode error"`` of that file.

The frames come back through a pipe, raw (pickle protocol 5, out of band); docs give the measured
cost per clip (``benchmarks/bench_watchdog.py``). The helper
is forked, so it starts at once and needs nothing re-imported, which limits the watchdog to POSIX
systems; elsewhere (Windows) decoding runs unguarded, logged once. It is also not for decoders that
use CUDA: a forked process cannot use the CUDA context of its parent.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import signal
import sys
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any, Callable

from .decoding import DECODE_ERROR, TIMED_OUT, ReadError

log = logging.getLogger("vivit_tl.data")
PR_SET_PDEATHSIG = 1  # linux/prctl.h
_warned_unsupported = False


def supported() -> bool:
    """The watchdog needs ``os.fork`` (Linux, macOS, the BSDs)."""
    return hasattr(os, "fork")


def call_with_timeout(timeout: float, path: str | os.PathLike, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` run in this process's decode helper, or ReadError naming ``path`` when it
    has not returned after ``timeout`` seconds or the helper died. ``timeout`` 0 calls ``fn`` here.

    ``fn``, its arguments and its result must pickle (``functools.partial`` of module-level
    functions, not lambdas).
    """
    if timeout <= 0 or not supported():
        if timeout > 0:
            _warn_unsupported()
        return fn(*args, **kwargs)
    return _HELPER.call(timeout, path, fn, *args, **kwargs)


class DecodeHelper:
    """One helper process per process (the pid that forked it owns it; a forked copy starts its own)."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._owner: int | None = None  # the pid that forked the helper
        self._conn: Connection | None = None

    def call(self, timeout: float, path: str | os.PathLike, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        conn = self._helper()
        try:
            conn.send((fn, args, kwargs))
        except OSError:  # the helper died between two decodes (killed from outside): start another
            self.close()
            conn = self._helper()
            conn.send((fn, args, kwargs))
        if not conn.poll(timeout):
            self.close()
            raise ReadError(path, TIMED_OUT, f"no result after {timeout:g} s; the decode was stopped")
        try:
            ok, value = _receive(conn)
        except (EOFError, OSError):  # the helper died (a decoder crash, or killed from outside)
            status = self.close()
            raise ReadError(path, DECODE_ERROR, f"the decoding process died ({_describe(status)})") from None
        if ok:
            return value
        raise value

    def close(self) -> int | None:
        """Kill the helper (if this process started it); returns its wait status."""
        pid, conn, owner = self._pid, self._conn, self._owner
        self._pid = self._conn = self._owner = None
        if conn is not None:
            conn.close()
        if pid is None or owner != os.getpid():
            return None
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return None

    def _helper(self) -> Connection:
        if self._pid is not None and self._owner == os.getpid():
            return self._conn
        if self._conn is not None:  # a forked copy: the helper belongs to the parent; drop our copy of its pipe
            self._conn.close()
            self._pid = self._conn = None
        ours, theirs = Pipe()
        pid = os.fork()
        if pid == 0:  # the helper
            try:
                ours.close()
                _serve(theirs)
            finally:
                os._exit(0)  # never run the parent's exit handlers
        theirs.close()
        self._pid, self._owner, self._conn = pid, os.getpid(), ours
        return ours


_HELPER = DecodeHelper()


def _serve(conn: Connection) -> None:
    """The helper's loop: run each request, send back ``(True, result)`` or ``(False, exception)``."""
    if sys.platform.startswith("linux"):  # die with the owner, even while hung in native code
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's to handle
    while True:
        try:
            fn, args, kwargs = conn.recv()
        except (EOFError, OSError):  # the owner is gone
            return
        try:
            answer = (True, fn(*args, **kwargs))
        except Exception as exc:
            answer = (False, exc)
        try:
            _send(conn, answer)
        except Exception as exc:  # an exception (or result) that does not pickle
            _send(conn, (False, RuntimeError(f"decode failed with an unpicklable result: {exc!r}: {answer[1]!r}")))


def _send(conn: Connection, obj: Any) -> None:
    """Pickle ``obj`` with its large buffers (the frames) out of band, sent raw: no pickled copy of them."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    conn.send_bytes(pickle.dumps((data, [v.nbytes for v in views])))
    for view in views:
        conn.send_bytes(view)


def _receive(conn: Connection) -> Any:
    """What `_send` sent; the buffers are read straight into writable memory."""
    data, sizes = pickle.loads(conn.recv_bytes())
    buffers = []
    for size in sizes:
        buffer = bytearray(size)
        conn.recv_bytes_into(buffer)
        buffers.append(buffer)
    return pickle.loads(data, buffers=buffers)


def _describe(status: int | None) -> str:
    if status is not None and os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    if status is not None and os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    return "unknown status"


def _warn_unsupported() -> None:
    global _warned_unsupported
    if not _warned_unsupported:
        _warned_unsupported = True
        log.warning("data.decode_timeout_s: the decode watchdog needs os.fork, which %s lacks; decoding runs "
                    "unguarded", sys.platform)
