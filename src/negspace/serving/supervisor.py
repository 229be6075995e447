"""The worker supervisor of `negspace serve --workers N`.

uvicorn's own stopped the whole server when a replacement worker failed to start (a worker that
died while the served run was broken took the healthy ones down with it), waited up to the start
timeout on each worker in turn (ignoring signals meanwhile), and replaced every worker on SIGHUP.
This one keeps each worker slot on its own: a worker that dies is restarted, one that fails to
start is retried with back-off (0.5 s doubling to 30 s) while the others serve, and SIGHUP is
passed to every worker that is serving (a worker still starting gets it once it serves, and a
slot waiting to retry starts at once, reading the source anew).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from socket import socket
from typing import Any

from uvicorn.supervisors.multiprocess import Process

log = logging.getLogger("uvicorn.error")
START_S = 300.0  # a worker may take this long to load its run before it counts as hung
HUNG_S = 60.0  # a serving worker that answers no ping for this long is killed and replaced
BACKOFF_S = (0.5, 30.0)  # first and longest wait before retrying a worker that failed to start
STOP_S = 20.0  # after SIGTERM, how long workers may finish their requests before SIGKILL


@dataclass
class Slot:
    process: Process | None = None
    started: float = 0.0
    ready: bool = False
    pinged: float | None = None  # when the unanswered ping was sent
    failures: int = 0  # failed starts in a row
    retry_at: float = 0.0
    hup_pending: bool = False


class Supervisor:
    """Starts `workers` uvicorn worker processes on `sockets` and keeps them running.

    Args:
        config: the uvicorn Config of the workers.
        sockets: the listening sockets (bound by the main process).
        workers: how many.
    """

    def __init__(self, config: Any, sockets: list[socket], workers: int) -> None:
        self.config, self.sockets = config, sockets
        self.slots = [Slot() for _ in range(workers)]
        self.should_exit = threading.Event()
        self.signals: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda sig, frame: self.signals.append(sig))

    def run(self) -> None:
        log.info("Started parent process [%d]", os.getpid())
        for slot in self.slots:
            self._start(slot)
        while not self.should_exit.wait(0.2):
            self._handle_signals()
            for i, slot in enumerate(self.slots):
                self._watch(i, slot)
        self._stop()
        log.info("Stopping parent process [%d]", os.getpid())

    def _start(self, slot: Slot) -> None:
        slot.process = Process(self.config, self.sockets)
        slot.process.start()
        slot.started, slot.ready, slot.pinged = time.monotonic(), False, None
        slot.hup_pending = False  # it reads the source as it starts: the latest SIGHUP's

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig == signal.SIGHUP:
                log.info("Received SIGHUP: every worker reloads its run in place")
                self._hup()
            else:
                log.info("Received %s, exiting.", signal.Signals(sig).name)
                self.should_exit.set()

    def _hup(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.process is None:
                slot.retry_at = now  # the operator may have fixed the run: retry now
            elif slot.ready:
                _signal(slot.process, signal.SIGHUP)
            else:  # no SIGHUP handler yet (SIGHUP would end it): sent once it serves
                slot.hup_pending = True

    def _watch(self, index: int, slot: Slot) -> None:
        now, p = time.monotonic(), slot.process
        if p is None:
            if now >= slot.retry_at and not self.should_exit.is_set():
                self._start(slot)
            return
        if not p.process.is_alive():
            p.process.join(1)
            _close(p)
            slot.process = None
            if slot.ready:  # it served, then died: replace it at once
                slot.failures, slot.retry_at = 0, now
                log.warning("Worker %d [%s] died (exit %s): restarting it", index, p.pid,
                            p.exitcode)
            else:
                slot.failures += 1
                wait = min(BACKOFF_S[1], BACKOFF_S[0] * 2 ** (slot.failures - 1))
                slot.retry_at = now + wait
                log.error("Worker %d [%s] failed to start (exit %s, %d in a row): retrying in "
                          "%.1f s; the other workers go on serving", index, p.pid, p.exitcode,
                          slot.failures, wait)
            return
        try:  # pings never block: one in flight per worker, its answer read when it comes
            if slot.pinged is None:
                p.parent_conn.send(b"ping")
                slot.pinged = now
            while p.parent_conn.poll(0):
                started = p.parent_conn.recv()
                slot.pinged = None
                if started and not slot.ready:
                    slot.ready, slot.failures = True, 0
                    if slot.hup_pending:
                        slot.hup_pending = False
                        _signal(p, signal.SIGHUP)
        except (OSError, EOFError):
            return  # dying: seen as dead on the next pass
        limit = HUNG_S if slot.ready else START_S
        if slot.pinged is not None and now - max(slot.pinged, slot.started) > limit:
            log.error("Worker %d [%s] answers no ping: killing it", index, p.pid)
            p.process.kill()

    def _stop(self) -> None:
        live = [s.process for s in self.slots if s.process is not None]
        for p in live:
            _signal(p, signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
        for p in live:
            p.process.join(max(0.1, deadline - time.monotonic()))
            if p.process.is_alive():
                p.process.kill()
                p.process.join(5)
            _close(p)


def _signal(p: Process, sig: int) -> None:
    try:
        if p.pid is not None:
            os.kill(p.pid, sig)
    except ProcessLookupError:
        pass


def _close(p: Process) -> None:
    for conn in (p.parent_conn, p.child_conn):
        try:
            conn.close()
        except OSError:
            pass
