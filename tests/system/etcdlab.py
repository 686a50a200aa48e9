"""etcdlab: a real etcd (Debian's etcd-server 3.4) for the tests, on
loopback with a data directory of the test's own, and `imds-loadmap sync`
processes following it.  etcd also listens on a unix socket in its data
directory's parent: a socket file is reachable from the labs' host network
namespaces, where the loopback address of the test's namespace is not.
Every process is stopped by its PID, also when a test fails."""

import base64
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import imdslab


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(text):
    return base64.b64encode(text.encode()).decode()


class Etcd:
    def __init__(self, workdir, tls=None):
        """tls: PEM paths {"ca", "server.pem", "server.key", "client.pem",
        "client.key"} for https with client certificates (etcdctl uses the
        client's)."""
        self.dir = str(workdir)
        self.data = os.path.join(self.dir, "data")
        self.client_port, self.peer_port, self.sock_port = free_port(), free_port(), free_port()
        self.tls = tls
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.client_port}"
        # etcd names the socket file NAME:PORT, in its working directory.
        self.socket = os.path.join(self.dir, f"localhost:{self.sock_port}")
        self.log = os.path.join(self.dir, "etcd.log")
        self.proc = None

    def command(self):
        peer = f"http://127.0.0.1:{self.peer_port}"
        listen = self.url if self.tls else f"{self.url},unix://localhost:{self.sock_port}"
        cmd = ["etcd", "--name", "default", "--data-dir", self.data, "--listen-client-urls", listen,
               "--advertise-client-urls", self.url, "--listen-peer-urls", peer,
               "--initial-advertise-peer-urls", peer, "--initial-cluster", f"default={peer}",
               "--max-txn-ops", "1024"]
        if self.tls:
            t = self.tls
            cmd += ["--cert-file", t["server.pem"], "--key-file", t["server.key"], "--client-cert-auth",
                    "--trusted-ca-file", t["ca"]]
        return cmd

    def start(self, timeout=15):
        assert self.proc is None
        if os.path.exists(self.socket):  # left by a killed etcd: it would not bind again
            os.unlink(self.socket)
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(self.command(), cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                rc, self.proc = self.proc.returncode, None
                raise AssertionError(f"etcd exited {rc}:\n{open(self.log).read()[-3000:]}")
            if self.ready():
                return
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"etcd not ready after {timeout} s:\n{open(self.log).read()[-3000:]}")

    def ready(self):
        try:
            p = self.etcdctl("--dial-timeout=1s", "--command-timeout=2s", "endpoint", "health", check=False,
                             timeout=5)
        except subprocess.TimeoutExpired:
            return False
        return p.returncode == 0

    def stop(self, sig=signal.SIGTERM):
        proc, self.proc = self.proc, None
        if proc is not None:
            imdslab.stop_process(proc, 10, sig)

    def etcdctl(self, *args, check=True, timeout=30):
        cmd = ["etcdctl", f"--endpoints={self.url}", *args]
        if not any(a.startswith("--command-timeout") for a in args):
            cmd.insert(2, "--command-timeout=10s")
        if self.tls:
            t = self.tls
            cmd += [f"--cacert={t['ca']}", f"--cert={t['client.pem']}", f"--key={t['client.key']}"]
        return imdslab.run(cmd, check=check, timeout=timeout, env=dict(os.environ, ETCDCTL_API="3"))

    # The gateway, for many keys at once (an etcdctl per key is slow).
    def post(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def txn(self, puts=(), deletes=()):
        """One transaction: puts {key: value} and deletes [key]; its revision."""
        ops = [{"request_delete_range": {"key": b64(k)}} for k in deletes]
        ops += [{"request_put": {"key": b64(k), "value": b64(v)}} for k, v in dict(puts).items()]
        return int(self.post("/v3/kv/txn", {"success": ops})["header"]["revision"])

    def put(self, key, value):
        return int(self.post("/v3/kv/put", {"key": b64(key), "value": b64(value)})["header"]["revision"])

    def revision(self):
        out = self.etcdctl("endpoint", "status", "-w", "json").stdout
        return int(json.loads(out)[0]["Status"]["header"]["revision"])


class Sync:
    """`imds-loadmap sync` for one lab (in its host network namespace, where
    the records' port names resolve) or for a bare pin directory."""

    def __init__(self, workdir, name, pin_dir, netns=None):
        self.pin_dir = pin_dir
        self.netns = netns
        self.log = os.path.join(str(workdir), f"sync-{name}.log")
        self.metrics = os.path.join(str(workdir), f"sync-{name}.prom")
        self.proc = None

    def start(self, endpoints, prefix, *args, env=None, wait="sync: watching", timeout=30):
        assert self.proc is None
        cmd = [imdslab.LOADMAP, "--pin-dir", self.pin_dir, "sync", "--etcd", ",".join(endpoints),
               "--prefix", prefix, "--metrics-file", self.metrics, *args]
        if self.netns:
            cmd = ["nsenter", f"--net=/run/netns/{self.netns}", *cmd]
        after = len(self.log_text()) if os.path.exists(self.log) else 0  # this run's lines only
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=dict(os.environ, **(env or {})))
        if wait:
            self.wait_log(wait, timeout, after)

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=10, after=0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_text()[after:]:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"sync exited {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"sync: no {text!r} after {timeout} s:\n{self.log_text()[-3000:]}")

    def counters(self):
        out = {}
        if not os.path.exists(self.metrics):
            return out
        for line in open(self.metrics):
            if line.startswith("#") or not line.strip():
                continue
            name, value = line.rsplit(" ", 1)
            out[name] = int(value)
        return out

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        proc, self.proc = self.proc, None
        return None if proc is None else imdslab.stop_process(proc, 10, cont=True)
