"""Verified, resumable downloads of the official weight files into ``<home>/weights/``.

Why not pooch (already a dependency): pooch restarts an interrupted download from byte zero, which
for a 4 GB Stable Diffusion checkpoint on a flaky connection may never finish; its hash check wants a
full digest, while the ODISE files publish only an 8-hex-digit prefix; and its errors do not say
where to put a file downloaded by hand. The transfer is therefore written here with the standard
library (``urllib``; ``requests`` is not a declared dependency): bytes go to ``<file>.part``, a
partial file is resumed with an HTTP ``Range`` request (a server that ignores ``Range`` and answers
200 makes it start over cleanly), the sha256 is computed while writing, and only a verified file is
renamed (atomically) to its final name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from napari_odise import __version__

from . import hashing, recorded
from .errors import WeightsUnavailableError
from .manifest import WeightFile, get
from .progress import byte_bar
from .sources import (
    OFFLINE_ENV,
    auth_headers,
    by_hand_instructions,
    downloads_disabled,
    hugging_face_token,
    login_hint,
    resolve_url,
)

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIABLE_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class _Interrupted(Exception):
    """The connection broke mid-transfer; the bytes received so far are in the .part file."""


class _StartOver(_Interrupted):
    """The server cannot continue the .part file (it was reset): connect again from byte zero."""


class _PartFile:
    """``<file>.part`` plus the running sha256 of its bytes, so nothing is read twice."""

    def __init__(self, path: Path):
        self.path = path
        self.hasher = hashlib.sha256()
        self.size = 0
        self.received = 0  # bytes that arrived over the current connection
        self._synced = False

    def sync(self, progress=False) -> int:
        """Hash what an earlier run left in the file (once), and return its size: the resume offset."""
        if not self._synced:
            self.hasher, self.size = hashlib.sha256(), 0
            if self.path.exists():
                total = self.path.stat().st_size
                desc = f"checking partial {self.path.name}"
                with open(self.path, "rb") as handle, byte_bar(progress, total=total, desc=desc) as bar:
                    while chunk := handle.read(CHUNK_BYTES):
                        self.hasher.update(chunk)
                        self.size += len(chunk)
                        bar.update(len(chunk))
            self._synced = True
        return self.size

    def restart(self) -> None:
        self.path.unlink(missing_ok=True)
        self.hasher, self.size, self._synced = hashlib.sha256(), 0, True


class _KeepAuthOnSameHost(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but drop ``Authorization`` when leaving the host it was meant for."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).hostname != urlsplit(req.full_url).hostname:
            new.remove_header("Authorization")
        return new


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def download(
    name: str | WeightFile,
    progress=True,
    force: bool = False,
    url: str | None = None,
    attempts: int = 3,
) -> Path:
    """Download one manifest file into ``<home>/weights/<filename>`` and return its path.

    An existing file is verified and kept (``force=True`` downloads it again). A broken connection
    is resumed automatically while bytes keep arriving, up to ``attempts`` connections; after that
    the ``.part`` file stays and the next call resumes it.
    """
    weight_file = get(name)
    target = weight_file.local_path()
    if target.exists() and not force:
        hashing.verify_file(target, weight_file, progress=progress)
        return target
    source = resolve_url(weight_file, url)
    if downloads_disabled():
        raise _unavailable(
            weight_file,
            source,
            f"{weight_file.name} is not installed and downloads are disabled ({OFFLINE_ENV} is set).",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    part = _PartFile(part_path(target))
    if force:
        part.restart()
    _fetch(weight_file, source, part, progress, max(1, attempts))
    digest = part.hasher.hexdigest()
    if not hashing.digest_matches(digest, weight_file):
        part.path.unlink(missing_ok=True)
        raise hashing.mismatch_error(
            target,
            weight_file,
            digest,
            advice=(
                f"The downloaded file was deleted and nothing was placed at {target}. "
                f"{source} served a different file: if it is a mirror, check what it holds; "
                "otherwise try again later."
            ),
        )
    os.replace(part.path, target)
    hashing.remember_sha256(target, digest)
    recorded.record_first(weight_file, digest, target.stat().st_size)
    return target


def ensure_file(name: str | WeightFile, allow_download: bool = True, progress=True) -> Path:
    """The verified local path of a file, downloading it first when it is missing and allowed."""
    weight_file = get(name)
    target = weight_file.local_path()
    if target.exists():
        hashing.verify_file(target, weight_file, progress=progress)
        return target
    if not allow_download:
        raise _unavailable(weight_file, resolve_url(weight_file), f"{weight_file.name} is not installed (no {target}).")
    return download(weight_file, progress=progress)


def _fetch(weight_file: WeightFile, url: str, part: _PartFile, progress, attempts: int) -> None:
    """Fill ``part`` with the whole remote file, resuming on broken connections."""
    for attempt in range(1, attempts + 1):
        part.sync(progress)
        part.received = 0
        try:
            _one_connection(weight_file, url, part, progress)
            return
        except _Interrupted as interrupted:
            worth_retrying = isinstance(interrupted, _StartOver) or part.received > 0
            if attempt == attempts or not worth_retrying:
                raise _unavailable(
                    weight_file,
                    url,
                    f"Could not download {weight_file.name} from {url}: the transfer was interrupted "
                    f"({interrupted}). The {part.size} bytes received are kept in {part.path}; "
                    "downloading again resumes from there.",
                ) from None


def _one_connection(weight_file: WeightFile, url: str, part: _PartFile, progress) -> None:
    offset = part.size
    headers = {"User-Agent": f"napari-odise/{__version__}", **auth_headers(weight_file, url)}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener(_KeepAuthOnSameHost)
    try:
        response = opener.open(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            total = _unsatisfiable_total(error.headers.get("Content-Range", ""))
            error.close()
            if total == offset:
                return  # the .part file was already complete
            part.restart()
            raise _StartOver("the server rejected the resume offset") from None
        error.close()
        reason = _http_reason(weight_file, error)
        raise _unavailable(weight_file, url, f"Could not download {weight_file.name} from {url}: {reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        host = urlsplit(url).hostname
        raise _unavailable(
            weight_file,
            url,
            f"Could not download {weight_file.name}: {host} is unreachable ({reason}); are you offline?",
        ) from None
    with response:
        total = _expected_total(response, offset, part)
        _copy(response, part, total, progress, weight_file.filename)


def _expected_total(response, offset: int, part: _PartFile) -> int | None:
    """The full file size, restarting ``part`` when the server sent the whole file (status 200)."""
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == offset:
            return int(match.group(3)) if match.group(3) != "*" else None
        part.restart()
        raise _StartOver("the server answered the resume request with a different range")
    if offset:  # 200 to a Range request: the server ignores Range, so the body is the whole file
        part.restart()
    return length


def _copy(response, part: _PartFile, total: int | None, progress, label: str) -> None:
    with open(part.path, "ab") as out, byte_bar(progress, total=total, initial=part.size, desc=label) as bar:
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except http.client.IncompleteRead as error:
                chunk, broken = error.partial, error
            except (OSError, http.client.HTTPException) as error:
                chunk, broken = b"", error
            else:
                broken = None
            if chunk:
                out.write(chunk)
                part.hasher.update(chunk)
                part.size += len(chunk)
                part.received += len(chunk)
                bar.update(len(chunk))
            if broken is not None:
                out.flush()
                raise _Interrupted(f"{type(broken).__name__} after {part.size} of {total or '?'} bytes")
            if not chunk:
                break
        out.flush()
        os.fsync(out.fileno())
    if total is not None and part.size < total:
        raise _Interrupted(f"connection closed after {part.size} of {total} bytes")


def _unsatisfiable_total(content_range: str) -> int | None:
    match = _UNSATISFIABLE_RANGE.match(content_range)
    return int(match.group(1)) if match else None


def _http_reason(weight_file: WeightFile, error: urllib.error.HTTPError) -> str:
    reason = f"HTTP {error.code} {error.reason}"
    if error.code in (401, 403):
        if weight_file.requires_login:
            token = "your Hugging Face token was refused" if hugging_face_token() else "no Hugging Face token was found"
            return f"{reason}: access refused, {token}.\n{login_hint(weight_file)}"
        return f"{reason}: access refused"
    if error.code == 404:
        return f"{reason}: the file is not at this address (moved, or a mirror without it)"
    return reason


def _unavailable(weight_file: WeightFile, url: str, headline: str) -> WeightsUnavailableError:
    """``headline`` says what went wrong; the rest says how to finish by hand."""
    message = f"{headline}\n{by_hand_instructions(weight_file, url)}"
    return WeightsUnavailableError(message, url=url, path=weight_file.local_path())
