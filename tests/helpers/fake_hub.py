"""A local stand-in for the Hub's upload API, enough for huggingface_hub's ``create_repo``,
``create_branch`` and ``upload_folder`` to run unchanged against it (``HF_ENDPOINT``).

Tests of `thinct push` have no network; this server lets the real huggingface_hub client
send a real commit and records what arrived, so the test can check the pushed files byte for
byte. Every file is accepted as a regular (non-LFS) upload, which the Hub protocol allows the
server to decide.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Commit:
    repo_id: str
    revision: str
    message: str
    files: dict[str, bytes]
    oid: str


@dataclass
class FakeHub:
    endpoint: str = ""
    repos: dict[str, bool] = field(default_factory=dict)  # repo id -> private
    branches: list[tuple[str, str]] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    validated: list[str] = field(default_factory=list)  # model card texts checked


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep the test output clean
            pass

        def _reply(self, status: int, payload: object) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            hub.tokens.append(self.headers.get("Authorization", ""))
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[:2] == ["api", "validate-yaml"]:
                # The client asks the Hub to check a model card's metadata before committing.
                hub.validated.append(json.loads(body)["content"])
                return self._reply(200, {"errors": [], "warnings": []})
            if parts[:3] == ["api", "repos", "create"]:
                payload = json.loads(body)
                repo_id = f"{payload['organization']}/{payload['name']}"
                hub.repos[repo_id] = payload.get("visibility") == "private"
                return self._reply(200, {"url": f"{hub.endpoint}/{repo_id}"})
            if parts[0] == "api" and parts[1] == "models" and len(parts) >= 5:
                repo_id, action, revision = f"{parts[2]}/{parts[3]}", parts[4], parts[5:]
                if action == "branch":
                    hub.branches.append((repo_id, "/".join(revision)))
                    return self._reply(200, {})
                if action == "preupload":
                    files = json.loads(body)["files"]
                    modes = [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in files
                    ]
                    return self._reply(200, {"files": modes})
                if action == "commit":
                    return self._commit(repo_id, "/".join(revision), body)
            self._reply(404, {"error": f"fake hub: no route for {self.path}"})

        def _commit(self, repo_id: str, revision: str, body: bytes) -> None:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = next(line["value"] for line in lines if line["key"] == "header")
            files = {
                line["value"]["path"]: base64.b64decode(line["value"]["content"])
                for line in lines
                if line["key"] == "file"
            }
            oid = hashlib.sha1(body).hexdigest()
            hub.commits.append(Commit(repo_id, revision, header["summary"], files, oid))
            self._reply(
                200, {"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{oid}", "commitOid": oid}
            )

    return Handler


class FakeHubServer:
    """Serves a `FakeHub` on a free local port while the context is open."""

    def __init__(self) -> None:
        self.hub = FakeHub()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.hub))
        self.hub.endpoint = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self.hub

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
