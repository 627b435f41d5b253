#!/usr/bin/env python3
"""What the test harness needs beside the cloud emulators, standard library only.

  emulators.py gcs-front LISTEN_PORT UPSTREAM_PORT
      Serves fake-gcs-server (on 127.0.0.1:UPSTREAM_PORT) on 127.0.0.1:LISTEN_PORT, adding the
      one call of Google Cloud Storage's XML API it lacks: PUT /BUCKET/OBJECT, which is how
      object_store writes. It becomes a JSON multipart upload, with x-goog-if-generation-match
      passed on as ifGenerationMatch (so a create of an existing key is 412, as on GCS), and
      the answer carries ETag and x-goog-generation as GCS's does. Every other request is
      passed on as it is.

  emulators.py azure-container ENDPOINT NAME
      Creates the container NAME on Azurite at ENDPOINT (http://127.0.0.1:PORT), signed with
      the emulator's well-known account key. Exit 0 when it exists afterwards.
"""
import base64
import hashlib
import hmac
import http.client
import json
import sys
import urllib.parse
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}


def gcs_front(listen, up):
    class Front(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def upstream(self, method, path, body, headers):
            c = http.client.HTTPConnection("127.0.0.1", up, timeout=60)
            headers["Host"] = f"127.0.0.1:{up}"
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            c.close()
            return r, data

        def reply(self, status, headers, data, head=False):
            self.send_response(status)
            for k, v in headers:
                if k.lower() not in HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)

        def forward(self, head=False):
            h = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            r, data = self.upstream(self.command, self.path, self.body() or None, h)
            self.reply(r.status, r.getheaders(), data, head)

        def do_GET(self):
            self.forward()

        def do_HEAD(self):
            self.forward(head=True)

        def do_DELETE(self):
            self.forward()

        def do_POST(self):
            self.forward()

        def do_PUT(self):
            u = urllib.parse.urlsplit(self.path)
            parts = u.path.lstrip("/").split("/", 1)
            copy = any(k.lower() == "x-goog-copy-source" for k in self.headers)
            if len(parts) != 2 or not parts[1] or u.query or copy:
                return self.forward()
            bucket, name = (urllib.parse.unquote(p) for p in parts)
            data = self.body()
            ctype = self.headers.get("Content-Type", "application/octet-stream")
            b = "datastore-test-boundary"
            meta = json.dumps({"name": name, "contentType": ctype})
            mp = (
                f"--{b}\r\nContent-Type: application/json\r\n\r\n{meta}\r\n"
                f"--{b}\r\nContent-Type: {ctype}\r\n\r\n"
            ).encode() + data + f"\r\n--{b}--\r\n".encode()
            q = {"uploadType": "multipart"}
            gen = self.headers.get("x-goog-if-generation-match")
            if gen is not None:
                q["ifGenerationMatch"] = gen
            path = f"/upload/storage/v1/b/{urllib.parse.quote(bucket)}/o?" + urllib.parse.urlencode(q)
            r, out = self.upstream(
                "POST", path, mp, {"Content-Type": f"multipart/related; boundary={b}"}
            )
            if r.status != 200:
                ct = r.getheader("Content-Type", "text/plain")
                return self.reply(r.status, [("Content-Type", ct)], out)
            o = json.loads(out)
            md5 = o.get("md5Hash", "")
            self.reply(
                200,
                [
                    ("ETag", f'"{md5}"'),
                    ("x-goog-generation", str(o.get("generation", ""))),
                    ("x-goog-hash", f"crc32c={o.get('crc32c', '')},md5={md5}"),
                ],
                b"",
            )

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", listen), Front).serve_forever()


# Azurite's account and key, the same in every installation (documented by Microsoft).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azure_container(endpoint, name):
    u = urllib.parse.urlsplit(endpoint)
    path = f"/{ACCOUNT}/{name}"
    date = formatdate(usegmt=True)
    version = "2021-08-06"
    # Shared Key: the verb, eleven standard headers (all empty here), the x-ms- headers, and
    # the resource with its query parameters.
    to_sign = (
        "PUT\n" + "\n" * 11
        + f"x-ms-date:{date}\nx-ms-version:{version}\n"
        + f"/{ACCOUNT}{path}\nrestype:container"
    )
    mac = hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest()
    headers = {
        "x-ms-date": date,
        "x-ms-version": version,
        "Content-Length": "0",
        "Authorization": f"SharedKey {ACCOUNT}:{base64.b64encode(mac).decode()}",
    }
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request("PUT", path + "?restype=container", body=b"", headers=headers)
    r = c.getresponse()
    body = r.read().decode(errors="replace")
    if r.status not in (201, 409):
        sys.exit(f"creating container {name}: HTTP {r.status}: {body}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["gcs-front"] and len(sys.argv) == 4:
        gcs_front(int(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1:2] == ["azure-container"] and len(sys.argv) == 4:
        azure_container(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
