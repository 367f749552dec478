"""Downloads against a local HTTP server (127.0.0.1) that can honour or ignore Range requests,
cut connections after N bytes, refuse access and redirect."""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from napari_odise.weights import ChecksumMismatchError, WeightFile, WeightsUnavailableError, download, hashing, sources
from napari_odise.weights.download import ensure_file, part_path

CONTENT = bytes(range(256)) * 1200  # 307,200 bytes
SHA256 = hashlib.sha256(CONTENT).hexdigest()


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    support_range: bool = True
    cut_after: int | None = None  # close the connection after this many body bytes ...
    cuts_left: int = 0  # ... for this many responses
    status: int | None = None  # answer every request with this error status
    token: str | None = None  # require "Authorization: Bearer <token>"
    redirects: dict[str, str] = field(default_factory=dict)  # path -> absolute URL
    log: list[dict] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    state: ServerState  # set per server

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        state = self.server.state
        state.log.append(
            {"path": self.path, "range": self.headers.get("Range"), "auth": self.headers.get("Authorization")}
        )
        if state.status:
            self.send_error(state.status)
            return
        if self.path in state.redirects:
            self.send_response(302)
            self.send_header("Location", state.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if state.token and self.headers.get("Authorization") != f"Bearer {state.token}":
            self.send_error(401)
            return
        data = state.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and state.support_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.cuts_left > 0 and state.cut_after is not None:
            state.cuts_left -= 1
            body = body[: state.cut_after]
        self.wfile.write(body)
        self.wfile.flush()


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = ServerState(files={"/files/model.pth": CONTENT})
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def weight_file(server, **changes) -> WeightFile:
    values = dict(
        name="test-model",
        role="odise",
        filename="test-model.pth",
        url=f"{server.base}/files/model.pth",
        licence="Test Licence 1.0",
        licence_url="https://example.org/licence",
        sha256=SHA256,
    )
    values.update(changes)
    return WeightFile(**values)


def test_download_places_verified_file_and_remembers_its_hash(server, _isolated_home):
    target = download(weight_file(server), progress=False)
    assert target == _isolated_home / "weights" / "test-model.pth"
    assert target.read_bytes() == CONTENT
    assert not part_path(target).exists()
    assert hashing.known_sha256(target) == SHA256
    assert server.state.log == [{"path": "/files/model.pth", "range": None, "auth": None}]


def test_prefix_only_hash_is_accepted(server):
    target = download(weight_file(server, sha256=None, sha256_prefix=SHA256[:8]), progress=False)
    assert target.read_bytes() == CONTENT


def test_present_file_is_verified_not_downloaded_again_unless_forced(server):
    wf = weight_file(server)
    download(wf, progress=False)
    download(wf, progress=False)
    assert len(server.state.log) == 1
    download(wf, progress=False, force=True)
    assert len(server.state.log) == 2
    assert wf.local_path().read_bytes() == CONTENT


def test_wrong_hash_leaves_no_file_and_says_so(server):
    wf = weight_file(server, sha256="0" * 64)
    with pytest.raises(ChecksumMismatchError) as caught:
        download(wf, progress=False)
    message = str(caught.value)
    assert "expected " + "0" * 64 in message and f"got {SHA256}" in message
    assert "nothing was placed" in message
    assert caught.value.expected == "0" * 64 and caught.value.got == SHA256
    assert not wf.local_path().exists()
    assert not part_path(wf.local_path()).exists()


def test_interrupted_transfer_keeps_part_and_next_call_resumes_with_range(server):
    server.state.cut_after, server.state.cuts_left = 100_000, 1
    wf = weight_file(server)
    part = part_path(wf.local_path())
    with pytest.raises(WeightsUnavailableError) as caught:
        download(wf, progress=False, attempts=1)
    assert str(part) in str(caught.value) and "resumes" in str(caught.value)
    assert part.read_bytes() == CONTENT[:100_000]
    assert not wf.local_path().exists()

    target = download(wf, progress=False)
    assert target.read_bytes() == CONTENT
    assert [entry["range"] for entry in server.state.log] == [None, "bytes=100000-"]
    assert not part.exists()


def test_broken_connections_resume_automatically_within_one_call(server):
    server.state.cut_after, server.state.cuts_left = 50_000, 2
    target = download(weight_file(server), progress=False, attempts=3)
    assert target.read_bytes() == CONTENT
    assert [entry["range"] for entry in server.state.log] == [None, "bytes=50000-", "bytes=100000-"]


def test_server_ignoring_range_restarts_cleanly(server):
    server.state.support_range = False
    wf = weight_file(server)
    part = part_path(wf.local_path())
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from another download" * 100)
    target = download(wf, progress=False)
    assert target.read_bytes() == CONTENT
    assert server.state.log[0]["range"] == f"bytes={len(b'stale bytes from another download') * 100}-"
    assert not part.exists()


def test_complete_part_file_is_finished_without_a_body(server):
    wf = weight_file(server)
    part = part_path(wf.local_path())
    part.parent.mkdir(parents=True)
    part.write_bytes(CONTENT)
    assert download(wf, progress=False).read_bytes() == CONTENT
    assert server.state.log[0]["range"] == f"bytes={len(CONTENT)}-"  # answered 416: nothing left


def test_401_on_gated_file_explains_login_and_manual_placement(server, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    server.state.status = 401
    wf = weight_file(server, requires_login=True)
    with pytest.raises(WeightsUnavailableError) as caught:
        download(wf, progress=False)
    message = str(caught.value)
    assert "HTTP 401" in message
    assert wf.url in message
    assert str(wf.local_path()) in message
    assert "Test Licence 1.0" in message and "https://example.org/licence" in message
    assert "HF_TOKEN" in message and "hf auth login" in message
    assert caught.value.path == wf.local_path() and caught.value.url == wf.url
    assert not wf.local_path().exists()


def test_403_on_public_file_has_no_login_advice(server):
    server.state.status = 403
    with pytest.raises(WeightsUnavailableError) as caught:
        download(weight_file(server), progress=False)
    assert "HTTP 403" in str(caught.value) and "HF_TOKEN" not in str(caught.value)


def test_unreachable_server_gives_manual_placement(server):
    wf = weight_file(server, url="http://127.0.0.1:9/model.pth")  # port 9 (discard): nothing listens
    with pytest.raises(WeightsUnavailableError) as caught:
        download(wf, progress=False)
    assert "unreachable" in str(caught.value) and str(wf.local_path()) in str(caught.value)
    assert "weights use" not in str(caught.value)  # an ODISE head has no stand-in
    with pytest.raises(WeightsUnavailableError, match="another form.*weights use --sd PATH"):
        download(weight_file(server, url="http://127.0.0.1:9/sd.ckpt", role="stable_diffusion"), progress=False)


def test_offline_switch_makes_no_request(server, monkeypatch):
    monkeypatch.setenv("NAPARI_ODISE_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="downloads are disabled"):
        download(weight_file(server), progress=False)
    assert server.state.log == []


def test_token_goes_only_to_hugging_face_hosts_and_only_for_gated_files(server, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "secret-token")
    download(weight_file(server, requires_login=True), progress=False)
    assert server.state.log[-1]["auth"] is None  # 127.0.0.1 is not a Hugging Face host

    monkeypatch.setattr(sources, "TOKEN_HOSTS", ("127.0.0.1",))
    server.state.token = "secret-token"
    download(weight_file(server, name="gated", filename="gated.pth", requires_login=True), progress=False)
    assert server.state.log[-1]["auth"] == "Bearer secret-token"
    with pytest.raises(WeightsUnavailableError, match="HTTP 401"):
        download(weight_file(server, name="public", filename="public.pth"), progress=False)
    assert server.state.log[-1]["auth"] is None


def test_redirect_to_another_host_drops_the_token(server, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "secret-token")
    monkeypatch.setattr(sources, "TOKEN_HOSTS", ("127.0.0.1",))
    port = server.server_address[1]
    server.state.redirects["/resolve/model.pth"] = f"http://localhost:{port}/files/model.pth"
    wf = weight_file(server, url=f"{server.base}/resolve/model.pth", requires_login=True)
    assert download(wf, progress=False).read_bytes() == CONTENT
    assert [(entry["path"], entry["auth"]) for entry in server.state.log] == [
        ("/resolve/model.pth", "Bearer secret-token"),
        ("/files/model.pth", None),
    ]


def test_mirror_environment_variable_redirects_downloads(server, monkeypatch):
    monkeypatch.setenv("NAPARI_ODISE_WEIGHTS_MIRROR", f"{server.base}/files/")
    wf = weight_file(server, url="https://unreachable.invalid/x.pth", filename="model.pth")
    assert download(wf, progress=False).read_bytes() == CONTENT
    assert server.state.log[0]["path"] == "/files/model.pth"


def test_ensure_file_without_download_explains_where_to_put_the_file(server):
    wf = weight_file(server)
    with pytest.raises(WeightsUnavailableError) as caught:
        ensure_file(wf, allow_download=False)
    assert "not installed" in str(caught.value) and str(wf.local_path()) in str(caught.value)
    assert server.state.log == []
    assert ensure_file(wf, progress=False).read_bytes() == CONTENT
