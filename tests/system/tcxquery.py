"""Which programs hang on ports' TCX hooks (Linux 6.6+): Debian 12's
bpftool 7.1 and tc (iproute2 6.1) do not show them.  Run inside the
network namespace of the ports:

    python3 tcxquery.py PORT...
    python3 tcxquery.py --all       (every link of the namespace)

prints JSON {PORT: {"ingress": [[name, link_id], ...], "egress": [...]}},
the programs in the order they run (link_id 0: attached without a link).
A port that does not exist is reported on stderr and the exit status is 1.

bpf(2) through ctypes: BPF_PROG_QUERY with BPF_TCX_INGRESS/EGRESS, then
each program's name by id."""

import ctypes
import json
import os
import socket
import struct
import sys

SYS_BPF = 321  # x86_64
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
ATTACH = {"ingress": 46, "egress": 47}  # BPF_TCX_INGRESS, BPF_TCX_EGRESS
MAX_PROGS = 64

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    rc = libc.syscall(SYS_BPF, cmd, buf, len(attr))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc, buf.raw


def query(ifindex, attach_type):
    """[(prog_id, link_id)] on the hook, in order."""
    ids = (ctypes.c_uint32 * MAX_PROGS)()
    links = (ctypes.c_uint32 * MAX_PROGS)()
    # union bpf_attr.query: target_ifindex, attach_type, query_flags,
    # attach_flags, prog_ids, count, pad, prog_attach_flags, link_ids,
    # link_attach_flags, revision.
    attr = struct.pack("=IIIIQIIQQQQ", ifindex, attach_type, 0, 0, ctypes.addressof(ids), MAX_PROGS, 0, 0,
                       ctypes.addressof(links), 0, 0)
    _, out = bpf(BPF_PROG_QUERY, attr)
    count = struct.unpack_from("=I", out, 24)[0]
    return [(ids[i], links[i]) for i in range(count)]


def prog_name(prog_id):
    fd, _ = bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("=III", prog_id, 0, 0))
    try:
        info = ctypes.create_string_buffer(80)  # struct bpf_prog_info up to name[16]
        bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("=IIQ", fd, len(info), ctypes.addressof(info)))
        return info.raw[64:80].split(b"\0", 1)[0].decode()
    finally:
        os.close(fd)


def main(ports):
    if ports == ["--all"]:
        ports = [name for _, name in socket.if_nameindex()]
    result, rc = {}, 0
    for port in ports:
        try:
            ifindex = socket.if_nametoindex(port)
        except OSError:
            print(f"tcxquery: no port {port}", file=sys.stderr)
            rc = 1
            continue
        result[port] = {hook: [[prog_name(p), link] for p, link in query(ifindex, t)] for hook, t in ATTACH.items()}
    print(json.dumps(result))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
