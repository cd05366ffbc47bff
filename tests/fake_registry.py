"""A small real HTTP Schema Registry for tests (none is installable here): the endpoints that
confluent-kafka's client uses, 404 for everything else."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class FakeSchemaRegistry:
    """State of the fake registry; ``requests`` records (method, path, query, body) per call."""

    url: str = ""
    schemas: dict[int, str] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, subject: str, schema: str) -> int:
        key = _normal(schema)
        schema_id = next((i for i, s in self.schemas.items() if _normal(s) == key), None)
        if schema_id is None:
            schema_id = len(self.schemas) + 1
            self.schemas[schema_id] = schema
        versions = self.subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id

    def paths(self, method: str) -> list[str]:
        return [path for m, path, _, _ in self.requests if m == method]

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path, query, body))
            parts = [unquote(p) for p in path.strip("/").split("/")]
            match (method, parts):
                case ("GET", ["subjects"]):
                    return 200, sorted(self.subjects)
                case ("POST", ["subjects", subject, "versions"]):
                    return 200, {"id": self.register(subject, body["schema"])}
                case ("POST", ["subjects", subject]):
                    return self._lookup(subject, body["schema"])
                case ("GET", ["subjects", subject, "versions"]) if subject in self.subjects:
                    return 200, list(range(1, len(self.subjects[subject]) + 1))
                case ("GET", ["subjects", subject, "versions", version]):
                    return self._version(subject, version)
                case ("GET", ["schemas", "ids", schema_id]) if (
                    schema_id.isdigit() and int(schema_id) in self.schemas
                ):
                    return 200, {"schema": self.schemas[int(schema_id)]}
                case ("GET", ["schemas", "ids", schema_id]):
                    return 404, {"error_code": 40403, "message": f"Schema {schema_id} not found"}
                case _:
                    return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}

    def _lookup(self, subject: str, schema: str) -> tuple[int, Any]:
        if subject not in self.subjects:
            return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
        for version, schema_id in enumerate(self.subjects[subject], start=1):
            if _normal(self.schemas[schema_id]) == _normal(schema):
                return 200, self._entry(subject, version, schema_id)
        return 404, {"error_code": 40403, "message": "Schema not found"}

    def _version(self, subject: str, version: str) -> tuple[int, Any]:
        versions = self.subjects.get(subject)
        if not versions:
            return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
        number = len(versions) if version == "latest" else int(version)
        if not 1 <= number <= len(versions):
            return 404, {"error_code": 40402, "message": f"Version {version} not found."}
        return 200, self._entry(subject, number, versions[number - 1])

    def _entry(self, subject: str, version: int, schema_id: int) -> dict[str, Any]:
        return {
            "subject": subject,
            "version": version,
            "id": schema_id,
            "schema": self.schemas[schema_id],
        }


def _normal(schema: str) -> str:
    return json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))


class _Handler(BaseHTTPRequestHandler):
    server: _RegistryServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        status, payload = self.server.registry.handle(method, url.path, query, body)
        content = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line; requests are recorded on the registry."""


class _RegistryServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, registry: FakeSchemaRegistry, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.registry = registry


@contextlib.contextmanager
def serve_registry(
    port: int = 0, registry: FakeSchemaRegistry | None = None
) -> Iterator[FakeSchemaRegistry]:
    """Serve a fake registry on 127.0.0.1:``port`` (0: an ephemeral port) while in the block: a
    fresh one, or ``registry`` again (a restarted registry keeps its schemas and their ids)."""
    registry = registry if registry is not None else FakeSchemaRegistry()
    server = _RegistryServer(registry, port)
    host, bound = server.server_address[:2]
    registry.url = f"http://{host!s}:{bound}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-schema-registry"
    )
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
