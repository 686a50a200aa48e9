#!/usr/bin/python3
"""abuse-conns.py: guests that hoard imdsd's connections (issue 12, finding
4), for tests/system/test_fairness.py and scripts/bench-abuse.sh.

Each --group NETNS:COUNT[:PERIOD] keeps COUNT connections to the metadata
address open from network namespace NETNS (/run/netns/NETNS).  Without
PERIOD the connections are idle: they send nothing (a hoarder).  With
PERIOD (seconds) each sends one byte of a request whose headers never end
every PERIOD seconds (slowloris).  A connection the server closes is
counted and opened again (at once, or after --reopen-delay seconds), so
the pressure stays for --duration seconds.

One process, one thread, epoll: the socket is made in the group's
namespace (setns before socket(); a socket stays where it was made).
Prints one JSON object on stdout at the end (or on SIGTERM), per group: opened (connects
that completed), connect_failed, closed_by_server, open_now, open_max.
With --ready FILE, writes FILE once every group has held its COUNT (or
--ready-after seconds have passed), so a caller knows the pressure is on."""

import argparse
import collections
import ctypes
import json
import os
import resource
import select
import signal
import socket
import sys
import time

CLONE_NEWNET = 0x40000000
ADDR = ("169.254.169.254", 80)
REQUEST_HEAD = b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\nX-Slow: "

_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


class Group:
    def __init__(self, spec):
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise SystemExit(f"abuse-conns: --group {spec}: NETNS:COUNT[:PERIOD]")
        self.netns, self.count = parts[0], int(parts[1])
        self.period = float(parts[2]) if len(parts) == 3 else None
        self.fd = os.open(f"/run/netns/{self.netns}", os.O_RDONLY)
        self.opened = self.connect_failed = self.closed_by_server = 0
        self.open_max = 0
        self.conns = {}  # fileno -> Conn
        self.pending = 0
        self.cooling = collections.deque()  # when each closed place may be opened again

    def open_now(self):
        return sum(1 for c in self.conns.values() if c.connected)

    def report(self):
        return {"netns": self.netns, "count": self.count, "period": self.period, "opened": self.opened,
                "connect_failed": self.connect_failed, "closed_by_server": self.closed_by_server,
                "open_now": self.open_now(), "open_max": self.open_max}


class Conn:
    def __init__(self, group, sock):
        self.group, self.sock = group, sock
        self.connected = False
        self.started = time.monotonic()
        self.next_byte = 0.0
        self.sent_head = False


class Abuser:
    def __init__(self, groups, max_pending, open_rate, reopen_delay):
        self.groups = groups
        self.reopen_delay = reopen_delay
        self.ep = select.epoll()
        self.by_fd = {}
        self.max_pending = max_pending
        self.open_rate = open_rate
        self.open_budget = 0.0
        self.current_ns = None

    def open_one(self, g):
        if self.current_ns is not g:
            setns(g.fd)
            self.current_ns = g
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(ADDR)
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            g.connect_failed += 1
            return
        c = Conn(g, s)
        g.conns[s.fileno()] = c
        self.by_fd[s.fileno()] = c
        g.pending += 1
        self.ep.register(s.fileno(), select.EPOLLOUT)

    def drop(self, c, by_server):
        g = c.group
        fd = c.sock.fileno()
        self.ep.unregister(fd)
        del self.by_fd[fd]
        del g.conns[fd]
        if not c.connected:
            g.pending -= 1
            g.connect_failed += 1
        elif by_server:
            g.closed_by_server += 1
            if self.reopen_delay:
                g.cooling.append(time.monotonic() + self.reopen_delay)
        c.sock.close()

    def on_event(self, fd, ev, now):
        c = self.by_fd.get(fd)
        if c is None:
            return
        g = c.group
        if not c.connected:
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.drop(c, False)
                return
            c.connected = True
            g.pending -= 1
            g.opened += 1
            g.open_max = max(g.open_max, g.open_now())
            c.next_byte = now
            self.ep.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
            return
        try:
            data = c.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.drop(c, True)

    def trickle(self, now):
        for g in self.groups:
            if g.period is None:
                continue
            for c in list(g.conns.values()):
                if not c.connected or now < c.next_byte:
                    continue
                c.next_byte = now + g.period
                try:
                    c.sock.send(REQUEST_HEAD if not c.sent_head else b"a")
                    c.sent_head = True
                except OSError:
                    self.drop(c, True)

    def reap(self, now, timeout=3.0):
        """Connects that got no answer (a SYN the data plane dropped is
        retried by the kernel for minutes) give their place back."""
        for g in self.groups:
            if g.pending:
                for c in [c for c in g.conns.values() if not c.connected and now - c.started > timeout]:
                    self.drop(c, False)

    def refill(self, dt):
        self.open_budget = min(self.open_budget + dt * self.open_rate, self.open_rate)
        now = time.monotonic()
        for g in self.groups:
            while g.cooling and g.cooling[0] <= now:
                g.cooling.popleft()
            while (len(g.conns) + len(g.cooling) < g.count and g.pending < self.max_pending
                   and self.open_budget >= 1):
                self.open_budget -= 1
                self.open_one(g)

    def stop(self, *_):
        self.stopping = True

    def run(self, duration, ready, ready_after):
        start = last = trickled = time.monotonic()
        self.stopping = False
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        ready_done = ready is None
        reaped = start
        while True:
            now = time.monotonic()
            if now - start >= duration or self.stopping:
                break
            self.refill(now - last)
            last = now
            try:
                events = self.ep.poll(0.05)
            except InterruptedError:
                events = []
            for fd, ev in events:
                self.on_event(fd, ev, now)
            if now - trickled >= 0.1:  # a byte every PERIOD s, give or take 0.1 s
                self.trickle(now)
                trickled = now
            if now - reaped > 0.5:
                self.reap(now)
                reaped = now
            if not ready_done and (all(g.open_now() >= g.count for g in self.groups) or now - start > ready_after):
                with open(ready + ".tmp", "w") as f:
                    json.dump([g.report() for g in self.groups], f)
                os.rename(ready + ".tmp", ready)
                ready_done = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", action="append", required=True, help="NETNS:COUNT[:PERIOD]")
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--max-pending", type=int, default=256, help="connects in flight per group")
    ap.add_argument("--open-rate", type=float, default=5000, help="connects started per second, all groups")
    ap.add_argument("--reopen-delay", type=float, default=0,
                    help="seconds before a place the server closed is opened again (default at once)")
    ap.add_argument("--ready", help="file written once the connections are held")
    ap.add_argument("--ready-after", type=float, help="... or after this many seconds (default duration / 2)")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    groups = [Group(spec) for spec in args.group]
    need = sum(g.count for g in groups) + 64
    if need > hard:
        sys.exit(f"abuse-conns: {need} descriptors needed, the hard limit is {hard}")
    a = Abuser(groups, args.max_pending, args.open_rate, args.reopen_delay)
    a.run(args.duration, args.ready, args.ready_after if args.ready_after is not None else args.duration / 2)
    json.dump({"groups": [g.report() for g in groups]}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
