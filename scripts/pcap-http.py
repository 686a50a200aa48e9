#!/usr/bin/env python3
"""pcap-http.py: the HTTP exchanges of a capture (tcpdump -w on one port,
Ethernet, IPv4, TCP port 80), one line each, in capture order:

    request PUT /latest/api/token token=no
    response 200
    request GET /latest/meta-data/instance-id token=yes

`token=yes` when the request carries an X-aws-ec2-metadata-token header
(IMDSv2); the PUT that asks for a token carries only the TTL header, so it
is token=no.  A segment seen twice (a retransmission) counts once.  Only a
segment that starts a request or a response is read: enough for the short
requests of metadata clients.  Used by scripts/e2e-cloudinit.sh (libvirt)."""

import struct
import sys

METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ")
TOKEN_HEADER = b"x-aws-ec2-metadata-token"


def records(data):
    """The frames of a classic pcap file (either byte order, µs or ns)."""
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise ValueError("not a pcap file (pcapng is not read)")
    linktype = struct.unpack(end + "I", data[20:24])[0]
    if linktype != 1:
        raise ValueError(f"link type {linktype}, not Ethernet")
    off = 24
    while off + 16 <= len(data):
        caplen = struct.unpack(end + "I", data[off + 8:off + 12])[0]
        yield data[off + 16:off + 16 + caplen]
        off += 16 + caplen


def tcp_payload(frame):
    """(flow key, sequence number, payload) of an IPv4 TCP frame, or None."""
    if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    if ip[9] != 6 or len(ip) < ihl + 20:
        return None
    tcp = ip[ihl:total]
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    if 80 not in (sport, dport):
        return None
    doff = (tcp[12] >> 4) * 4
    return (ip[12:16], sport, ip[16:20], dport), seq, tcp[doff:]


def describe(payload):
    if payload.startswith(METHODS):
        head = payload.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        method, path = head[0].split(b" ")[:2]
        names = {line.split(b":", 1)[0].strip().lower() for line in head[1:]}
        token = "yes" if TOKEN_HEADER in names else "no"
        return f"request {method.decode()} {path.decode(errors='replace')} token={token}"
    if payload.startswith(b"HTTP/1."):
        return f"response {payload.split(b' ')[1].decode(errors='replace')}"
    return None


def main():
    if len(sys.argv) != 2:
        print("usage: pcap-http.py CAPTURE.pcap", file=sys.stderr)
        return 2
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    seen = set()
    for frame in records(data):
        seg = tcp_payload(frame)
        if not seg or not seg[2] or seg[:2] in seen:
            continue
        seen.add(seg[:2])
        line = describe(seg[2])
        if line:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
