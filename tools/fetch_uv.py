"""Fetch the pinned uv binary from its PyPI wheel with nothing but the standard library: the
fallback of ./argus for machines whose Python has no venv or pip module.

    python3 tools/fetch_uv.py <version> <destination file>

Downloads honour HTTPS_PROXY and SSL_CERT_FILE (a TLS-inspecting proxy's CA). Every failure
is a `FetchError` naming the URL and the cause; run as a script, one line and exit 1.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import platform
import stat
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urljoin

TAGS = {
    ("Linux", "x86_64"): "manylinux_2_17_x86_64", ("Linux", "aarch64"): "manylinux_2_17_aarch64",
    ("Darwin", "x86_64"): "macosx_10_12_x86_64", ("Darwin", "arm64"): "macosx_11_0_arm64",
}
INDEX = "https://pypi.org/pypi/uv/json"


class FetchError(Exception):
    """Why uv could not be fetched, as one line."""


class UnsupportedPlatform(FetchError):
    pass


def download(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - https only
            return r.read()
    except urllib.error.HTTPError as exc:
        raise FetchError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise FetchError(f"cannot download {url}: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:  # reset, timeout, cut short
        raise FetchError(f"cannot download {url}: {exc!r}") from exc


def main(version: str, destination: Path) -> None:
    tag = TAGS.get((platform.system(), platform.machine()))
    if tag is None:
        raise UnsupportedPlatform(f"no uv wheel is known for {platform.system()} "
                                  f"{platform.machine()}")
    try:
        files = json.loads(download(INDEX, 60))["releases"].get(version, [])
    except (ValueError, KeyError, TypeError) as exc:
        raise FetchError(f"cannot read {INDEX}: {exc!r} (not PyPI's JSON API?)") from exc
    wheel = next((f for f in files if tag in f["filename"] and f["filename"].endswith(".whl")),
                 None)
    if wheel is None:
        raise UnsupportedPlatform(f"uv {version} has no wheel for {tag} on {INDEX}")
    url = urljoin(INDEX, wheel["url"])
    if not url.startswith("https://"):
        raise FetchError(f"refusing to download uv from {url} (not https)")
    data = download(url, 300)
    expected, got = wheel["digests"]["sha256"], hashlib.sha256(data).hexdigest()
    if got != expected:
        raise FetchError(f"the uv wheel from {url} does not match its published SHA-256 "
                         f"(expected {expected}, got {got})")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            member = next(n for n in archive.namelist() if n.endswith("/scripts/uv"))
            binary = archive.read(member)
    except (zipfile.BadZipFile, StopIteration) as exc:
        raise FetchError(f"the uv wheel from {url} holds no scripts/uv") from exc
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    partial.write_bytes(binary)
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(partial, destination)  # never a half-written uv at the destination


if __name__ == "__main__":
    try:
        main(sys.argv[1], Path(sys.argv[2]))
    except (FetchError, OSError) as exc:
        sys.exit(f"argus: {exc}")
