"""Where a weight file is fetched from, with which credentials, and what to tell a user who must
fetch it by hand.

URL precedence: an explicit ``url`` argument, then ``NAPARI_ODISE_URL_<NAME>`` (the file's name
upper-cased, other characters as ``_``, e.g. ``NAPARI_ODISE_URL_SD_V1_3``), then
``NAPARI_ODISE_WEIGHTS_MIRROR`` (a base URL; the manifest file name is appended), then the manifest.

The Hugging Face token (``HF_TOKEN``, or the one stored by ``hf auth login``) is sent only for files
that require a login and only to Hugging Face hosts, so a mirror or a redirect target never sees it.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from .manifest import WeightFile
from .own_files import stand_in_flag

MIRROR_ENV = "NAPARI_ODISE_WEIGHTS_MIRROR"
OFFLINE_ENV = "NAPARI_ODISE_OFFLINE"
TOKEN_HOSTS: tuple[str, ...] = ("huggingface.co", "hf.co")


def url_env_name(weight_file: WeightFile) -> str:
    return "NAPARI_ODISE_URL_" + re.sub(r"[^A-Z0-9]", "_", weight_file.name.upper())


def resolve_url(weight_file: WeightFile, url: str | None = None) -> str:
    if url:
        return url
    override = os.environ.get(url_env_name(weight_file), "").strip()
    if override:
        return override
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        return mirror.rstrip("/") + "/" + weight_file.filename
    return weight_file.url


def downloads_disabled() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def is_token_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(host == allowed or host.endswith("." + allowed) for allowed in TOKEN_HOSTS)


def hugging_face_token() -> str | None:
    """``HF_TOKEN`` (or the older ``HUGGING_FACE_HUB_TOKEN``), else the token saved by ``hf auth login``."""
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        token = os.environ.get(variable, "").strip()
        if token:
            return token
    try:
        from huggingface_hub import get_token
    except ImportError:
        return None
    try:
        return get_token() or None
    except Exception:  # a broken token file must not stop a download that may not need it
        return None


def auth_headers(weight_file: WeightFile, url: str) -> dict[str, str]:
    if not weight_file.requires_login or not is_token_host(url):
        return {}
    token = hugging_face_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def model_page(url: str) -> str | None:
    """``https://huggingface.co/ORG/REPO/resolve/main/FILE`` -> ``https://huggingface.co/ORG/REPO``."""
    if "/resolve/" in url and is_token_host(url):
        return url.split("/resolve/")[0]
    return None


def login_hint(weight_file: WeightFile) -> str:
    page = model_page(weight_file.url) or weight_file.url
    return (
        f"{weight_file.name} is gated on Hugging Face: log in at {page}, accept the licence there "
        '("Agree and access repository"), create a read token at https://huggingface.co/settings/tokens, '
        "then set HF_TOKEN=<token> (or run `hf auth login`) and download again."
    )


def by_hand_instructions(weight_file: WeightFile, url: str | None = None) -> str:
    """The part of every "unavailable" message that lets a user finish without our downloader."""
    licence = weight_file.licence + (f" ({weight_file.licence_url})" if weight_file.licence_url else "")
    url = url or weight_file.url
    official = "" if url == weight_file.url else f" (official source: {weight_file.url})"
    lines = [
        f"To install it by hand, download {url}{official}",
        f"and save it as:\n    {weight_file.local_path()}",
        f"then check it with `napari-odise weights verify {weight_file.name}`.",
        f"Licence: {licence}.",
    ]
    flag = stand_in_flag(weight_file.role)
    if flag is not None:
        lines.append(f"Have it in another form (e.g. a diffusers folder)? `napari-odise weights use {flag} PATH`.")
    return "\n".join(lines)
