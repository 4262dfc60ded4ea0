"""The timed handshake between the judge and a solution's process, both sides (CPU).

The judge's clock must bracket the call and as little else as possible, and it must
not depend on when a busy machine schedules the judge. So:

1. READY(i, slot), a datagram: the solution's process wakes, gets its arguments ready,
   writes ARMED = i + 1 in a shared page and spins on the page's GO word. The judge
   spins (yielding the CPU) on the ARMED word meanwhile, outside the clock.
2. Only now does the judge write the call's inputs into the shared slot and evict them
   from the caches (until then they were in its private memory: no thread of the
   solution's can work on them off the clock). Then it reads its clock
   (CLOCK_REALTIME, ns) and writes GO = i + 1.
3. The solution's process sees GO, calls, hands the outputs over, writes DONE = i + 1
   (with ERROR_BIT set when the call raised), and sends a DONE(i) datagram.

Two ways to wait for GO, chosen by the judge per call (WAKE_BIT in READY's slot):
- spinning on the GO word (the default): the call starts within nanoseconds of GO, at
  the price of a CPU taken while the judge publishes the inputs;
- asleep in the socket (`wake=True`): the judge sends a GO(i) datagram after the GO
  word, and the solution's process wakes to it. The wake-up (microseconds) is on the
  clock and stays in the figure (`timing`: only the spun-on handshake is subtracted,
  since a solution's own thread watching the GO word would not spend it). For a
  solution whose threads fill the machine's CPUs (`timing.wake_for`): a spinning main
  thread, the judge publishing and the solution's other threads are more runnable
  threads than CPUs, and at GO one of the call's threads can be queued behind another
  until a scheduler tick moves it (seen: a two-thread numba kernel on two CPUs timed
  at 1.9 or 5 ms by the call).
4. The clock stops at the kernel's receive timestamp of that datagram (SO_TIMESTAMPNS):
   the moment the solution's process declared the call done, whenever the judge wakes
   to read it. The judge sleeps meanwhile, so it takes no CPU from the call.

So the judge times the call plus one store through shared memory and one datagram
send, plus, for a solution that returns its outputs, their copy into the judge's
buffers. `calibrate` (in `timing`) measures exactly that with no call, before any
solution code is loaded; the judge subtracts its median. A solution that sends DONE
before its outputs are written gains at most the judge's own wake-up delay: the judge
copies the outputs as soon as it wakes, and the checks after the loop catch outputs
that were still being written (they changed after DONE) or wrong.

Frames are 12 bytes (kind, iteration, slot; `messages.HOT_FRAME`) on a datagram
socket pair of their own; a frame out of step is a reply nobody asked for.
"""

from __future__ import annotations

import mmap
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from solforge.bench.messages import HOT_FRAME

READY, GO, DONE, STOP = 1, 2, 3, 4
ERROR_BIT = 1 << 62
PROFILE_BIT = 1 << 31  # in READY's slot: run this call under torch's profiler (a secret sample of timed calls)
WAKE_BIT = 1 << 30  # in READY's slot: wait for GO asleep in the socket (a GO datagram follows the GO word)
_FLAGS = PROFILE_BIT | WAKE_BIT
_WORD = struct.Struct("<Q")
_GO, _DONE, _ARMED = 0, 8, 16
PAGE_BYTES = 64
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # 35: SO_TIMESTAMPNS_OLD, Linux
_STAMP = struct.Struct("qq")  # struct timespec


class OutOfStep(Exception):
    """The other side sent a frame it should not have, or none in time."""

    def __init__(self, message: str, timeout: bool = False):
        super().__init__(message)
        self.timeout = timeout


class CallRaised(Exception):
    """The timed call raised on the solution's side (the reason comes with the reply after STOP)."""

    def __init__(self, iteration: int):
        super().__init__(f"timed call {iteration} raised")
        self.iteration = iteration


class SignalPage:
    """Three 64-bit words in shared memory: GO (judge -> solution), DONE and ARMED
    (solution -> judge)."""

    def __init__(self, fd: int, owner: bool):
        self.fd = fd if owner else None
        self._map = mmap.mmap(fd, PAGE_BYTES, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        if not owner:
            os.close(fd)

    @classmethod
    def create(cls) -> SignalPage:
        fd = os.memfd_create("solforge-signals", os.MFD_CLOEXEC)
        os.ftruncate(fd, PAGE_BYTES)
        return cls(fd, owner=True)

    def set(self, offset: int, value: int) -> None:
        _WORD.pack_into(self._map, offset, value)

    def get(self, offset: int) -> int:
        return _WORD.unpack_from(self._map, offset)[0]

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self._map.close()


class HotLine:
    """The judge's end of the handshake: the signal page and a datagram socket whose
    received datagrams carry the kernel's timestamp. `their_fds` go to the child."""

    def __init__(self) -> None:
        self.page = SignalPage.create()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ours.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock, self._theirs = ours, theirs
        self._poll = select.poll()
        self._poll.register(ours.fileno(), select.POLLIN)

    @property
    def their_fds(self) -> tuple[int, int]:
        assert self.page.fd is not None
        return self.page.fd, self._theirs.fileno()

    def send(self, kind: int, iteration: int, slot: int) -> None:
        self.sock.send(HOT_FRAME.pack(kind, iteration, slot))

    def pending(self) -> bool:
        return bool(self._poll.poll(0))

    def receive(self, timeout_s: float) -> tuple[int, int, int, int] | None:
        """(kind, iteration, slot, the kernel's receive time in CLOCK_REALTIME ns), or
        None when nothing arrived within `timeout_s`."""
        if not self._poll.poll(max(0, int(timeout_s * 1e3))):
            return None
        data, ancillary, _, _ = self.sock.recvmsg(HOT_FRAME.size + 1, 64)
        if len(data) != HOT_FRAME.size:
            return (0, len(data), 0, 0)
        stamp = time.clock_gettime_ns(time.CLOCK_REALTIME)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= _STAMP.size:
                sec, ns = _STAMP.unpack_from(payload)
                stamp = sec * 1_000_000_000 + ns
        return (*HOT_FRAME.unpack(data), stamp)

    def close(self) -> None:
        self.sock.close()
        self._theirs.close()
        self.page.close()


def judge_round(line: HotLine, iteration: int, slot: int, timeout_s: float,
                on_armed: Callable[[], None] | None = None, profile: bool = False, wake: bool = False) -> int:
    """One timed call (steps 1 to 4 of the module docstring). `on_armed()` runs once the
    solution's process is armed and before the clock starts: the judge publishes the
    call's inputs there, so that nothing in the solution's process can see them before
    GO (work done on them between calls would be off the clock). `wake`: the solution's
    process waits for GO asleep, and a GO datagram wakes it. Returns the raw time in
    nanoseconds. Raises OutOfStep (timeout=True when nothing came in time) or CallRaised."""
    page = line.page
    want = iteration + 1
    line.send(READY, iteration, slot | (PROFILE_BIT if profile else 0) | (WAKE_BIT if wake else 0))
    deadline = time.perf_counter() + timeout_s
    spins = 0
    while page.get(_ARMED) != want:
        os.sched_yield()  # outside the clock: let the solution's process run
        spins += 1
        if spins & 0xFF == 0:
            if time.perf_counter() > deadline:
                raise OutOfStep(f"timed call {iteration}: not armed within {timeout_s:g} s", timeout=True)
            if line.pending():
                _step(line, iteration, 0, timeout_s)  # a frame before GO is out of step: raises
    if on_armed is not None:
        on_armed()
    t0 = time.clock_gettime_ns(time.CLOCK_REALTIME)
    page.set(_GO, want)
    if wake:
        line.send(GO, iteration, slot)
    stamp = _step(line, iteration, DONE, timeout_s)
    seen = page.get(_DONE)
    if seen & ~ERROR_BIT != want:
        raise OutOfStep(f"timed call {iteration}: the DONE word says {seen}, expected {want}: a reply the judge did "
                        "not ask for")
    if seen & ERROR_BIT:
        raise CallRaised(iteration)
    return stamp - t0


def _step(line: HotLine, iteration: int, kind: int, timeout_s: float) -> int:
    frame = line.receive(timeout_s)
    if frame is None:
        raise OutOfStep(f"timed call {iteration}: no answer within {timeout_s:g} s", timeout=True)
    got, i, _, stamp = frame
    if got != kind or i != iteration:
        raise OutOfStep(f"timed call {iteration}: the solution's process sent frame {got} for call {i} where the judge "
                        f"waited for frame {kind}: a reply the judge did not ask for")
    return stamp


def stop(line: HotLine) -> None:
    line.send(STOP, 0, 0)


# -- the solution's side ------------------------------------------------------------------------


def _frame(sock: socket.socket) -> tuple[int, int, int]:
    """The next frame from the judge, (kind, iteration, slot); EOFError when the socket
    closed or the datagram is not a frame."""
    data = sock.recv(HOT_FRAME.size)
    if len(data) != HOT_FRAME.size:
        raise EOFError
    return HOT_FRAME.unpack(data)


def serve_rounds(page_fd: int, sock_fd: int, arm: Callable[[int, bool], Any], call: Callable[[Any], None],
                 on_error: Callable[[BaseException], None]) -> None:
    """The solution's side until STOP: `arm(slot, profile)` prepares a call's arguments
    outside the judge's clock, `call(armed)` runs it (and hands its outputs over). An
    exception in `call` is passed to `on_error` and answered with ERROR_BIT. A frame out
    of step (anything but READY or STOP between calls, anything but this call's GO
    while waiting for it asleep) ends the rounds with EOFError; the judge reports it.
    Closes both descriptors."""
    page = SignalPage(page_fd, owner=False)
    sock = socket.socket(fileno=sock_fd)
    words = page._map
    try:
        while True:
            kind, i, slot = _frame(sock)
            if kind == STOP:
                return
            if kind != READY:
                raise EOFError  # out of step with the judge: end; the judge reports it
            armed = arm(slot & ~_FLAGS, bool(slot & PROFILE_BIT))
            want = i + 1
            _WORD.pack_into(words, _ARMED, want)
            if slot & WAKE_BIT:  # asleep until the judge's GO datagram; the GO word is then set
                got, gi, _ = _frame(sock)
                if got == STOP:
                    return
                if got != GO or gi != i:
                    raise EOFError
            spins = 0
            while _WORD.unpack_from(words, _GO)[0] != want:
                spins += 1
                if spins & 0xFFFF == 0:
                    os.sched_yield()
            done = want
            try:
                call(armed)
            except BaseException as exc:  # SystemExit from user code too
                on_error(exc)
                done |= ERROR_BIT
            _WORD.pack_into(words, _DONE, done)
            sock.send(HOT_FRAME.pack(DONE, i, slot & ~_FLAGS))
    finally:
        sock.close()
        page.close()
