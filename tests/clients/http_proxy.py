#!/usr/bin/python3
"""A forwarding HTTP proxy for a guest, announcing itself the way common
proxies do (squid adds both by default): `Via: 1.1 <name>` and
`X-Forwarded-For: <client address>`.  Clients use it through their usual
proxy settings (http_proxy), so their requests arrive at the metadata
service carrying these headers, as from a guest whose IMDS traffic goes
through a proxy.

Runs inside a VM's network namespace; listens on 127.0.0.1:PORT, prints
"ready" once it does, and serves until killed.  One upstream connection per
request (HTTP/1.0 to the client)."""

import argparse
import http.client
import http.server
import sys
import urllib.parse

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade"}


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    name = "lab-proxy"

    def forward(self):
        url = urllib.parse.urlsplit(self.path)
        if url.scheme != "http" or not url.hostname:
            self.send_error(400, "absolute http:// URL expected")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Via"] = f"1.1 {self.name}"
        headers["X-Forwarded-For"] = self.client_address[0]
        path = url.path + (f"?{url.query}" if url.query else "")
        upstream = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
        try:
            upstream.request(self.command, path, body=body, headers=headers)
            resp = upstream.getresponse()
            data = resp.read()
        except OSError as e:
            self.send_error(502, f"upstream: {e}")
            return
        finally:
            upstream.close()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_HEAD = forward

    def log_message(self, fmt, *args):
        sys.stderr.write("proxy: " + fmt % args + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Proxy)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
