"""Fetch the pinned uv binary from its PyPI wheel with nothing but the standard library: the
fallback of ./argus for machines whose Python has no venv or pip module.

    python3 tools/fetch_uv.py <version> <destination file>
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import stat
import sys
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urljoin

TAGS = {
    ("Linux", "x86_64"): "manylinux_2_17_x86_64", ("Linux", "aarch64"): "manylinux_2_17_aarch64",
    ("Darwin", "x86_64"): "macosx_10_12_x86_64", ("Darwin", "arm64"): "macosx_11_0_arm64",
}


def main(version: str, destination: Path) -> None:
    tag = TAGS.get((platform.system(), platform.machine()))
    if tag is None:
        sys.exit(f"argus: no uv wheel known for {platform.system()} {platform.machine()}")
    index = "https://pypi.org/pypi/uv/json"
    with urllib.request.urlopen(index, timeout=60) as r:
        files = json.load(r)["releases"].get(version, [])
    wheel = next((f for f in files if tag in f["filename"] and f["filename"].endswith(".whl")),
                 None)
    if wheel is None:
        sys.exit(f"argus: uv {version} has no wheel for {tag}")
    url = urljoin(index, wheel["url"])
    if not url.startswith("https://"):
        sys.exit(f"argus: refusing to download uv from {url}")
    with urllib.request.urlopen(url, timeout=300) as r:  # noqa: S310 - https checked above
        data = r.read()
    if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
        sys.exit("argus: the uv wheel does not match its published SHA-256")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        member = next(n for n in archive.namelist() if n.endswith("/scripts/uv"))
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(archive.read(member))
    destination.chmod(destination.stat().st_mode | stat.S_IEXEC)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
