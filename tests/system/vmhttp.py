"""vmhttp: talk HTTP to 169.254.169.254 from inside a VM's namespace.

A socket belongs to the network namespace of the thread that created it,
for its whole life.  So instead of starting a client process per request
with `ip netns exec`, the test process enters the VM's namespace just long
enough to create the socket (setns(2) through libc: Python 3.11 has no
os.setns), and then uses it from its own namespace.

The client is deliberately raw (no http.client): the tests need to tell an
empty reply from a reset from a timeout, to keep one connection for several
requests, and to see every header exactly as sent.
"""

import contextlib
import ctypes
import errno
import os
import socket
import struct
import time

IMDS_ADDR = "169.254.169.254"
CLONE_NEWNET = 0x40000000
ETH_P_IP = 0x0800

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns: " + os.strerror(err))


@contextlib.contextmanager
def netns(name):
    """Runs the body with this thread in /run/netns/NAME."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open("/run/netns/" + name, os.O_RDONLY)
    except OSError:
        os.close(own)
        raise
    try:
        _setns(target)
        try:
            yield
        finally:
            # Failing to come back would run the rest of the suite in the
            # VM's namespace: better to stop everything.
            try:
                _setns(own)
            except OSError as e:
                os.write(2, f"vmhttp: cannot return to the test's namespace: {e}\n".encode())
                os._exit(70)
    finally:
        os.close(target)
        os.close(own)


class NoResponse(Exception):
    """The server answered nothing usable.  kind is one of: refused,
    timeout, reset, closed (EOF before a complete response), unreachable."""

    def __init__(self, kind, detail="", partial=b""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.partial = partial


class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value)] in wire order
        self.body = body  # bytes

    def header(self, name):
        """Value of the first header called `name` (any case), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return f"<Response {self.status} {self.reason!r} {self.body[:80]!r}>"


def _kind_of(exc):
    if isinstance(exc, socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable"
    return None


class Connection:
    """One TCP connection from a VM to the metadata service."""

    def __init__(self, ns, addr=IMDS_ADDR, port=80, timeout=3.0):
        with netns(ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.buf = b""
        try:
            self.sock.connect((addr, port))
        except OSError as e:
            self.sock.close()
            kind = _kind_of(e)
            if kind is None:
                raise
            raise NoResponse(kind, str(e)) from None
        self.local_port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, method, path, headers=None, body=None):
        lines = [f"{method} {path} HTTP/1.1", f"Host: {IMDS_ADDR}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.send_raw(data + (body or b""))

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except OSError as e:
            kind = _kind_of(e)
            if kind is None:
                raise
            raise NoResponse(kind, str(e), self.buf) from None
        if not chunk:
            raise NoResponse("closed", "EOF", self.buf)
        self.buf += chunk

    def _read_head(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return version, int(status), reason, headers

    def _read_body(self, length):
        if length is None:  # delimited by the end of the connection
            while True:
                try:
                    self._fill()
                except NoResponse as e:
                    if e.kind != "closed":
                        raise
                    body, self.buf = self.buf, b""
                    return body
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return body

    def read_response(self, head_request=False):
        version, status, reason, headers = self._read_head()
        resp = Response(version, status, reason, headers, b"")
        length = resp.header("Content-Length")
        if head_request or status in (204, 304) or 100 <= status < 200:
            return resp
        resp.body = self._read_body(int(length) if length is not None else None)
        return resp

    def request(self, method, path, headers=None, body=None):
        self.send(method, path, headers, body)
        return self.read_response(head_request=(method == "HEAD"))


def fetch(ns, method, path, headers=None, body=None, timeout=3.0):
    """One request on a fresh connection; returns a Response or raises
    NoResponse."""
    with Connection(ns, timeout=timeout) as c:
        return c.request(method, path, headers, body)


def get(ns, path, token=None, timeout=3.0):
    headers = {"X-aws-ec2-metadata-token": token} if token else None
    return fetch(ns, "GET", path, headers, timeout=timeout)


def put_token(ns, ttl="21600", extra=None, path="/latest/api/token"):
    headers = {}
    if ttl is not None:
        headers["X-aws-ec2-metadata-token-ttl-seconds"] = str(ttl)
    headers.update(extra or {})
    return fetch(ns, "PUT", path, headers)


def token_for(ns, ttl=21600):
    r = put_token(ns, ttl)
    assert r.status == 200, f"token PUT from {ns}: {r!r}"
    return r.text


class Capture:
    """Captures IPv4 frames arriving on eth0 of a VM namespace (AF_PACKET),
    to read header fields (TTL) that a TCP socket does not show."""

    def __init__(self, ns, ifname="eth0"):
        with netns(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
            self.sock.bind((ifname, ETH_P_IP))
        self.sock.settimeout(0.05)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def tcp_segments(self, src=IMDS_ADDR, sport=80, seconds=0.3):
        """Drains what arrived (waiting up to `seconds` for more) and returns
        [(ttl, dport, flags, payload_len)] of TCP segments from src:sport."""
        out = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                frame = self.sock.recv(65536)
            except socket.timeout:
                continue
            seg = _parse_tcp(frame)
            if seg and seg[0] == src and seg[1] == sport:
                out.append(seg[2:])
        return out


def _parse_tcp(frame):
    ip = frame[14:]
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
        return None
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    tcp = ip[ihl:total]
    if len(tcp) < 20:
        return None
    sport, dport = struct.unpack("!HH", tcp[:4])
    doff = (tcp[12] >> 4) * 4
    return (socket.inet_ntoa(ip[12:16]), sport, ip[8], dport, tcp[13], len(tcp) - doff)
