"""The null responder of `make bench` (tests/bench/null_responder.c, issue
15): one fixed 200 for every request, so it is only a fair floor if it
frames HTTP/1.x as a server must.  Started here on a loopback port: pipelined
requests each get an answer, in one read or split byte by byte, a body is
skipped by its Content-Length, and the connection ends exactly when
"Connection: close" or HTTP/1.0 say so.  No lab: a second or two."""

import os
import socket
import subprocess
import time

import pytest

import imdslab

NULL = os.path.join(imdslab.BUILD, "bench", "null_responder")
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 31\r\nConnection: %s\r\n\r\n"
          b"AQAEAnullresponderfixedanswer==")
KEEP = ANSWER % b"keep-alive"
CLOSE = ANSWER % b"close"
GET = b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    if not os.access(NULL, os.X_OK):
        pytest.fail(f"{NULL} is missing: run `make` first", pytrace=False)
    port = free_port()
    proc = subprocess.Popen([NULL, "--address", "127.0.0.1", "--port", str(port), "--workers", "2"],
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = proc.stderr.readline().decode()
    if "null_responder: ready" not in ready:
        proc.kill()
        pytest.fail(f"null_responder did not start: {ready}{proc.stderr.read().decode()}", pytrace=False)
    yield port
    proc.terminate()
    assert proc.wait(5) == 0


def talk(port, chunks, pause=0.0):
    """Sends the chunks (pause seconds apart) and reads until the server
    closes or stays silent for 0.3 s: (bytes read, True when it closed,
    "reset" when it reset, False when it stayed open)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        for c in chunks:
            s.sendall(c)
            time.sleep(pause)
        s.settimeout(0.3)
        got = b""
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                return got, False
            except ConnectionResetError:
                return got, "reset"
            if not b:
                return got, True
            got += b


def test_pipelined_requests_each_get_an_answer(server):
    body = b"PUT /latest/api/token HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    got, closed = talk(server, [GET + body + GET])
    assert got == KEEP * 3
    assert not closed


def test_a_request_split_byte_by_byte(server):
    got, closed = talk(server, [bytes([b]) for b in GET], pause=0.001)
    assert got == KEEP
    assert not closed


def test_more_pipelined_requests_than_one_send(server):
    got, closed = talk(server, [GET * 70])
    assert got == KEEP * 70
    assert not closed


def test_connection_close_ends_after_its_answer(server):
    close = b"GET /x HTTP/1.1\r\nHost: a\r\nconnection: Close\r\n\r\n"
    got, closed = talk(server, [GET + close + GET])
    assert got == KEEP + CLOSE  # the request after it is not answered
    assert closed


def test_close_on_a_connection_already_kept_open(server):
    # the second request reaches a connection with a multishot recv armed,
    # which only a shutdown ends
    close = b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n"
    got, closed = talk(server, [GET, GET, close], pause=0.05)
    assert (got, closed) == (KEEP * 2 + CLOSE, True)


def test_http10_closes_unless_keep_alive(server):
    got, closed = talk(server, [b"GET / HTTP/1.0\r\n\r\n"])
    assert (got, closed) == (CLOSE, True)
    got, closed = talk(server, [b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2])
    assert (got, closed) == (KEEP * 2, False)


def test_what_cannot_be_framed_is_answered_then_closed(server):
    chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    got, closed = talk(server, [chunked])
    assert (got, closed) == (CLOSE, True)
    # Headers beyond its 4 KiB buffer: closed with bytes still unread, which
    # the kernel turns into a reset (the answer may or may not arrive first).
    huge = b"GET / HTTP/1.1\r\nX: " + b"a" * 5000
    got, closed = talk(server, [huge])
    assert got in (CLOSE, b"") and closed in (True, "reset")


def test_an_incomplete_request_waits(server):
    got, closed = talk(server, [b"GET / HTTP/1.1\r\nHost: a\r\n"])
    assert (got, closed) == (b"", False)
