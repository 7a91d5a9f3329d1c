"""A fake Civitai on 127.0.0.1 for tests: real HTTP, the documented response shapes (docs/reference/civitai-api.md §2, §4).

Two servers run in threads: the API host (``/api/v1/...``, ``/api/download/models/{id}``, ``/login``, ``/images/...``)
and a separate "storage" host on another port that serves the pre-signed file URLs the download endpoint redirects
to, with ``Range`` support. Both record every request (method, path, headers) so tests can check what was sent.

Knobs (set them before the request):

- ``add_lora(...)`` / ``add_model(...)``: catalogue entries; the file bytes are served by storage.
- ``script(path, status, body, headers, times)``: the next ``times`` requests to ``path`` get this canned reply.
- ``drops[file_id] = [n, ...]``: each storage response for the file stops after ``n`` body bytes and closes the socket.
- per-version flags in ``add_model``: ``early_access`` (deadline), ``login_page`` (200 HTML), ``login_redirect``,
  ``gone`` (410); ``require_token`` applies to every download.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from safetensors.numpy import save

LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Sign in | Civitai</title></head><body>Sign in</body></html>"


def lora_bytes(seed: int, *, rank: int = 4, width: int = 320, metadata: dict[str, str] | None = None) -> bytes:
    """A small kohya-style LoRA safetensors file (random weights), a few hundred KB."""
    rng = np.random.default_rng(seed)
    tensors = {
        "lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": rng.standard_normal((rank, width), np.float32),
        "lora_unet_mid_block_attentions_0_proj_in.lora_up.weight": rng.standard_normal((width, rank), np.float32),
        "lora_unet_mid_block_attentions_0_proj_in.alpha": np.array(float(rank), np.float32),
        "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": rng.standard_normal(
            (rank, width * 40), np.float32
        ),
        "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": rng.standard_normal((width, rank), np.float32),
    }
    return save(tensors, metadata=metadata or {"ss_output_name": f"fake{seed}"})


def tensor_sha256(data: bytes) -> str:
    """AutoV3 source, computed independently of loradeck: sha256 of the bytes after the safetensors header."""
    (n,) = struct.unpack("<Q", data[:8])
    return hashlib.sha256(data[8 + n :]).hexdigest()


def jpeg_bytes(color: tuple[int, int, int], size: tuple[int, int] = (48, 64)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    server: str  # "api" | "storage"
    method: str
    path: str  # with query
    headers: dict[str, str]  # lower-case names


@dataclass
class Entry:
    model: dict[str, Any]
    version: dict[str, Any]
    file: dict[str, Any]
    content: bytes
    flags: dict[str, Any]


class FakeCivitai:
    def __init__(self, token: str = "fake-key-0123456789", *, require_token: bool = True):
        self.token = token
        self.require_token = require_token
        self.entries: list[Entry] = []
        self.images: dict[int, bytes] = {}
        self.scripts: dict[str, list[Reply]] = defaultdict(list)
        self.drops: dict[int, list[int]] = defaultdict(list)
        self.requests: list[Seen] = []
        self.ignore_range = False
        self.trickle: dict[int, float] = {}  # file id → seconds to wait after each 16 KiB (kill tests)
        self._lock = threading.Lock()
        self._next_id = 100
        self.api = _server(self, "api")
        self.storage = _server(self, "storage")

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakeCivitai:
        for srv in (self.api, self.storage):
            threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for srv in (self.api, self.storage):
            srv.shutdown()
            srv.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api.server_address[1]}"

    @property
    def storage_url(self) -> str:
        return f"http://127.0.0.1:{self.storage.server_address[1]}"

    # ------------------------------------------------------------------ catalogue

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add_model(
        self,
        name: str,
        content: bytes,
        *,
        type: str = "LORA",
        base_model: str = "SD 1.5",
        trained_words: list[str] | None = None,
        nsfw: bool = False,
        image_levels: tuple[int, ...] = (1,),
        file_name: str | None = None,
        listed_sha256: str | None = None,
        listed_size: int | None = None,
        description: str = "<p>A <b>fake</b> model &amp; more.</p>",
        **flags: Any,
    ) -> Entry:
        """One model with one version and one primary file. ``listed_*`` override what the API claims (to lie)."""
        model_id, version_id, file_id = self._id(), self._id(), self._id()
        sha = hashlib.sha256(content).hexdigest()
        hashes = {
            "AutoV2": sha[:10].upper(),
            "SHA256": (listed_sha256 or sha).upper(),
            "CRC32": "00000000",
        }
        if content[:8] and struct.unpack("<Q", content[:8])[0] + 8 <= len(content):
            hashes["AutoV3"] = tensor_sha256(content)[:12].upper()
        file = {
            "id": file_id,
            "name": file_name or f"{name.lower().replace(' ', '_')}.safetensors",
            "sizeKB": (listed_size if listed_size is not None else len(content)) / 1024,
            "type": "Model",
            "metadata": {"format": "SafeTensor", "size": None, "fp": "fp32"},
            "pickleScanResult": "Success",
            "virusScanResult": "Success",
            "hashes": hashes,
            "downloadUrl": f"{self.base_url}/api/download/models/{version_id}",
            "primary": True,
        }
        images = []
        for level in image_levels:
            image_id = self._id()
            self.images[image_id] = jpeg_bytes(((image_id * 37) % 256, (level * 50) % 256, 200))
            images.append(
                {
                    "id": image_id,
                    "url": f"{self.base_url}/images/{image_id}.jpeg",
                    "nsfwLevel": level,
                    "width": 48,
                    "height": 64,
                    "hash": "U00000fQfQfQfQfQfQfQfQfQfQfQ",
                    "type": "image",
                    "hasMeta": True,
                    "meta": {"prompt": f"{name}, masterpiece", "seed": image_id},
                }
            )
        deadline = flags.get("early_access")
        version = {
            "id": version_id,
            "modelId": model_id,
            "name": "v1.0",
            "description": None,
            "baseModel": base_model,
            "baseModelType": "Standard",
            "air": f"urn:air:sd1:lora:civitai:{model_id}@{version_id}",
            "status": "Published",
            "availability": "EarlyAccess" if deadline else "Public",
            "nsfwLevel": max(image_levels or (1,)),
            "createdAt": "2024-01-01T00:00:00.000Z",
            "publishedAt": "2024-01-02T00:00:00.000Z",
            "trainedWords": trained_words if trained_words is not None else [f"{name.lower()} style"],
            "earlyAccessEndsAt": deadline,
            "stats": {"downloadCount": 10 * model_id, "thumbsUpCount": 3},
            "model": {"name": name, "type": type, "nsfw": nsfw, "poi": False, "minor": False},
            "files": [file],
            "images": images,
            "downloadUrl": f"{self.base_url}/api/download/models/{version_id}",
        }
        model = {
            "id": model_id,
            "name": name,
            "description": description,
            "type": type,
            "nsfw": nsfw,
            "nsfwLevel": 1,
            "tags": ["style"],
            "creator": {"username": "tester", "image": None},
            "stats": {"downloadCount": 10 * model_id, "thumbsUpCount": 3},
        }
        entry = Entry(model, version, file, content, flags)
        self.entries.append(entry)
        return entry

    def script(self, path: str, status: int, body: Any = b"", headers: dict[str, str] | None = None, times: int = 1):
        """The next ``times`` requests whose path (without query) is ``path`` get this reply first."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json" if not isinstance(body, bytes) else "text/plain", **(headers or {})}
        with self._lock:
            self.scripts[path].extend(Reply(status, raw, hdrs) for _ in range(times))

    def seen(self, server: str, prefix: str = "") -> list[Seen]:
        return [r for r in self.requests if r.server == server and r.path.startswith(prefix)]

    # ------------------------------------------------------------------ shapes

    def model_json(self, entry: Entry) -> dict[str, Any]:
        """``/models`` item: the version nested without ``model``/``modelId`` and images without ``meta``."""
        version = {k: v for k, v in entry.version.items() if k not in ("model", "modelId", "air")}
        version["images"] = [{k: v for k, v in i.items() if k != "meta"} for i in version["images"]]
        return {**entry.model, "modelVersions": [version]}

    def _by_version(self, version_id: int) -> Entry | None:
        return next((e for e in self.entries if e.version["id"] == version_id), None)

    def _by_model(self, model_id: int) -> Entry | None:
        return next((e for e in self.entries if e.model["id"] == model_id), None)

    def _by_file(self, file_id: int) -> Entry | None:
        return next((e for e in self.entries if e.file["id"] == file_id), None)

    # ------------------------------------------------------------------ API routes

    def api_reply(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Reply:
        with self._lock:
            queue = self.scripts.get(path)
            if queue:
                return queue.pop(0)
        parts = path.strip("/").split("/")
        if path == "/api/v1/models":
            return self._search(query)
        if parts[:3] == ["api", "v1", "models"] and len(parts) == 4:
            entry = self._by_model(int(parts[3]))
            return (
                _json(200, self.model_json(entry)) if entry else _json(404, {"error": f"No model with id {parts[3]}"})
            )
        if path == "/api/v1/model-versions/by-hash" and method == "POST":
            return self._by_hash_batch(body)
        if parts[:4] == ["api", "v1", "model-versions", "by-hash"] and len(parts) == 5:
            return self._by_hash(parts[4])
        if parts[:3] == ["api", "v1", "model-versions"] and len(parts) == 4:
            entry = self._by_version(int(parts[3]))
            return _json(200, entry.version) if entry else _json(404, {"error": "Model not found"})
        if parts[:3] == ["api", "download", "models"] and len(parts) == 4:
            return self._download(int(parts[3]), headers)
        if path == "/login":
            return Reply(200, LOGIN_PAGE, {"Content-Type": "text/html; charset=utf-8"})
        if parts[0] == "images" and len(parts) == 2:
            data = self.images.get(int(parts[1].split(".")[0]))
            return Reply(200, data, {"Content-Type": "image/jpeg"}) if data else Reply(404, b"not found")
        return _json(404, {"error": "Not found"})

    def _search(self, query: dict[str, list[str]]) -> Reply:
        try:  # Civitai answers a 400 with an error object for fields it cannot read
            limit, start = int(query.get("limit", ["100"])[0]), int(query.get("cursor", ["0"])[0])
        except ValueError:
            return _json(400, {"error": "limit and cursor must be numbers"})
        if limit > 100:
            return _json(400, {"error": "limit must be at most 100"})
        text = query.get("query", [""])[0].lower()
        types, bases = query.get("types", []), query.get("baseModels", [])
        nsfw = query.get("nsfw", ["false"])[0] == "true"
        hits = [
            e
            for e in self.entries
            if text in e.model["name"].lower()
            and (not types or e.model["type"] in types)
            and (not bases or e.version["baseModel"] in bases)
            and (nsfw or not e.model["nsfw"])
        ]
        page = hits[start : start + limit]
        meta: dict[str, Any] = {}
        if start + limit < len(hits):
            meta = {
                "nextCursor": str(start + limit),
                "nextPage": f"{self.base_url}/api/v1/models?cursor={start + limit}",
            }
        return _json(200, {"items": [self.model_json(e) for e in page], "metadata": meta})

    def _by_hash(self, value: str) -> Reply:
        value = value.upper()
        for e in self.entries:
            if value in e.file["hashes"].values():
                return _json(200, e.version)
        return _json(404, {"error": "Model not found"})

    def _by_hash_batch(self, body: bytes) -> Reply:
        hashes = json.loads(body or b"null")
        if not isinstance(hashes, list) or len(hashes) > 100 or any(len(h) != 64 for h in hashes):
            return _json(400, {"error": "Request must include an array of SHA256 Hashes"})
        wanted = {h.upper() for h in hashes}
        return _json(200, [e.version for e in self.entries if e.file["hashes"]["SHA256"] in wanted])

    def _download(self, version_id: int, headers: dict[str, str]) -> Reply:
        entry = self._by_version(version_id)
        if entry is None:
            return Reply(404, b"File not found", {"Content-Type": "text/plain"})
        flags = entry.flags
        if flags.get("gone"):
            return Reply(410, b"Model archived, not available for download", {"Content-Type": "text/plain"})
        if flags.get("login_page"):  # what a browser-UA client ends up with after following the login redirect
            return Reply(200, LOGIN_PAGE, {"Content-Type": "text/html; charset=utf-8"})
        authed = headers.get("authorization") == f"Bearer {self.token}"
        if flags.get("login_redirect") and not authed:
            login = f"/login?returnUrl=/model-versions/{version_id}&reason=download-auth"
            return Reply(307, b"", {"Location": login})
        if self.require_token and not authed:
            message = "The creator of this asset requires you to be logged in to download it"
            return _json(401, {"error": "Unauthorized", "message": message})
        if flags.get("early_access"):
            message = "This asset is in Early Access. You can use Buzz access it now!"
            return _json(403, {"error": "Early Access", "deadline": flags["early_access"], "message": message})
        location = f"{self.storage_url}/file/{entry.file['id']}?X-Amz-Expires=86400&X-Amz-Signature=abc"
        return Reply(307, b"", {"Location": location, "Cache-Control": "no-store"})


def _json(status: int, doc: Any) -> Reply:
    return Reply(status, json.dumps(doc).encode(), {"Content-Type": "application/json; charset=utf-8"})


def _server(fake: FakeCivitai, kind: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes; don't wait for delayed ACKs

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _record(self) -> tuple[str, dict[str, list[str]], dict[str, str], bytes]:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake.requests.append(Seen(kind, self.command, self.path, headers))
            parts = urlsplit(self.path)
            return parts.path, parse_qs(parts.query), headers, body

        def do_GET(self) -> None:
            path, query, headers, body = self._record()
            if kind == "storage":
                self._storage(path, headers)
            else:
                self._send(fake.api_reply("GET", path, query, headers, body))

        def do_POST(self) -> None:
            path, query, headers, body = self._record()
            self._send(fake.api_reply("POST", path, query, headers, body))

        def _send(self, reply: Reply) -> None:
            self.send_response(reply.status)
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def _storage(self, path: str, headers: dict[str, str]) -> None:
            with fake._lock:
                queue = fake.scripts.get(path)
                if queue:
                    self._send(queue.pop(0))
                    return
            entry = fake._by_file(int(path.rsplit("/", 1)[-1])) if path.startswith("/file/") else None
            if entry is None:
                self._send(Reply(404, b"NoSuchKey"))
                return
            data, size = entry.content, len(entry.content)
            start = 0
            rng = headers.get("range", "")
            if rng.startswith("bytes=") and not fake.ignore_range:
                start = int(rng[6:].split("-")[0])
                if start >= size:
                    self._send(Reply(416, b"", {"Content-Range": f"bytes */{size}"}))
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            else:
                self.send_response(200)
            name = entry.file["name"]
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Disposition", f'attachment; filename="{name}"')
            self.send_header("Content-Length", str(size - start))
            self.end_headers()
            with fake._lock:
                drops = fake.drops.get(entry.file["id"])
                cut = drops.pop(0) if drops else None
                delay = fake.trickle.get(entry.file["id"])
            if cut is None and delay:
                try:
                    for i in range(start, size, 1 << 14):
                        self.wfile.write(data[i : i + (1 << 14)])
                        self.wfile.flush()
                        time.sleep(delay)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client was killed: that is the point of the test
                return
            if cut is None:
                self.wfile.write(data[start:])
                return
            self.wfile.write(data[start : start + cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-body

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server
