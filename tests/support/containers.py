"""Images and containers without a container engine: the Dockerfile's stages built as overlay
layers in a private mount namespace, and its commands run in a chroot of those layers.

`Dockerfile.parse` reads FROM/AS, ARG, ENV, WORKDIR, COPY (from the build context, a stage or
the uv image), RUN, USER, EXPOSE, VOLUME, CMD and ENTRYPOINT. `Builder.build(target, args)`
runs each instruction as Docker would: RUN lines through `/bin/sh -c` as root inside the
stage's filesystem (so `uv sync --frozen --package ...` builds the venv the image has, at the
path it has, from the files the COPY lines copied), each stage an overlay upper layer over its
parent's. The base `python:3.11-slim` is stood in for by this machine's `/usr` and `/etc` (its
Python 3.11 as `/usr/local/bin/python3`, the path the image's interpreter has) under an empty
root; `COPY --from=ghcr.io/astral-sh/uv:V` is the bootstrap uv when its version is V. The uv
cache is the machine's (mounted at `/.uv-cache`, outside the image), so a build downloads
nothing the test run's own venv did not already fetch.

`run(container)` starts a container: the image's layers, a container layer, and the mounts a
deployment declares (tmpfs, named volumes seeded from the image as Docker seeds them, emptyDir
and PVCs as the kubelet makes them, secrets as read-only files); with a read-only root every
filesystem but those mounts (and /dev, /proc) is remounted read-only, then the command runs as
the image's user (or the deployment's), with only the image's and the deployment's environment.
A write anywhere else fails with EROFS, as it would in the container.

This needs root and mount namespaces (`unshare --mount`); `require_engine()` skips where they
are missing, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).parents[2]
UV = ROOT / ".argus" / "bootstrap" / "bin" / "uv"
UV_IMAGE = "ghcr.io/astral-sh/uv:"
# what the official python:3.11-slim image sets (its other variables name its own build)
BASE_IMAGES: Mapping[str, Mapping[str, str]] = {
    "python:3.11-slim": {
        "PATH": "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
    },
}
# how this machine reaches the package registries (a build here needs them as docker's would)
REGISTRY_SETTINGS = frozenset({
    "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy",
    "https_proxy", "no_proxy", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL",
    "UV_SYSTEM_CERTS", "UV_NATIVE_TLS", "UV_OFFLINE",
})
GROUPS = ("usr", "etc")  # mounted from this machine under the empty root; the rest is "top"
LOWERS = {"usr": Path("/usr"), "etc": Path("/etc")}


def require_engine() -> None:
    """Skip (fail under CI=true) where mount namespaces, overlayfs and chroot are not ours."""
    why = _engine_missing()
    if why is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the image tests cannot run here: {why}; CI runs them as root")
    pytest.skip(f"the image tests need root and mount namespaces: {why}")


def _engine_missing() -> str | None:
    if sys.platform != "linux":
        return "not Linux"
    if os.geteuid() != 0:
        return "not root (run as root, as CI does)"
    for tool in ("unshare", "chroot", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not UV.exists():
        return f"{UV} is missing (./argus installs it)"
    with tempfile.TemporaryDirectory() as scratch:
        probe = Path(scratch)
        for name in ("up", "work", "m"):
            (probe / name).mkdir()
        script = (f"mount -t overlay overlay -o lowerdir=/etc,upperdir={probe}/up,"
                  f"workdir={probe}/work {probe}/m")
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               script], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"overlay in a mount namespace failed: {done.stderr.strip()[:200]}"
    return None


# --- the Dockerfile ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    keyword: str
    text: str  # the arguments as written (continuations joined)

    def words(self) -> list[str]:
        return shlex.split(self.text)

    def json_or_words(self) -> list[str]:
        text = self.text.strip()
        if text.startswith("["):
            value = json.loads(text)
            assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
            return value
        return self.words()


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)


@dataclass(frozen=True)
class Dockerfile:
    path: Path
    global_args: dict[str, str | None]
    stages: list[Stage]

    @classmethod
    def parse(cls, path: Path) -> Dockerfile:
        logical: list[str] = []
        pending = ""
        for raw in path.read_text().splitlines():
            line = raw.rstrip()
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if pending and line.lstrip().startswith("#"):
                continue  # a comment inside a continued instruction
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            logical.append(pending + line)
            pending = ""
        assert not pending, f"{path}: the last instruction ends with a continuation"
        global_args: dict[str, str | None] = {}
        stages: list[Stage] = []
        for line in logical:
            keyword, _, text = line.strip().partition(" ")
            keyword = keyword.upper()
            if keyword == "FROM":
                words = text.split()
                name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(
                    len(stages))
                stages.append(Stage(name, words[0]))
            elif not stages:
                assert keyword == "ARG", f"{path}: {keyword} before the first FROM"
                key, _, default = text.strip().partition("=")
                global_args[key] = default or None
            else:
                stages[-1].instructions.append(Instruction(keyword, text.strip()))
        return cls(path, global_args, stages)

    def stage(self, name: str | None) -> Stage:
        if name is None:
            return self.stages[-1]
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise AssertionError(f"{self.path} has no stage {name!r}")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Docker's `$VAR` / `${VAR}` substitution (unset is empty)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            if text[i + 1] == "{":
                end = text.index("}", i)
                out.append(env.get(text[i + 2:end], ""))
                i = end + 1
                continue
            j = i + 1
            while j < len(text) and (text[j].isalnum() or text[j] == "_"):
                j += 1
            if j > i + 1:
                out.append(env.get(text[i + 1:j], ""))
                i = j
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def env_pairs(text: str) -> list[tuple[str, str]]:
    words = shlex.split(text)
    if words and "=" not in words[0]:  # the legacy `ENV KEY value` form
        return [(words[0], " ".join(words[1:]))]
    return [tuple(word.split("=", 1)) for word in words]  # type: ignore[misc]


# --- images -----------------------------------------------------------------------------------

@dataclass
class Layer:
    directory: Path

    def part(self, group: str) -> Path:
        return self.directory / group

    def work(self, group: str) -> Path:
        return self.directory / f".work-{group}"


@dataclass
class Image:
    """A built stage: its layers (topmost first, the base last) and its configuration."""

    layers: list[Layer]
    env: dict[str, str]
    workdir: str = "/"
    user: str = "0"
    cmd: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)
    build_log: str = ""

    def find(self, path: str) -> Path | None:
        """Where `path` of the image's filesystem is on this machine (None: not in it)."""
        group, rest = split_group(path)
        for layer in self.layers:
            candidate = layer.part(group) / rest
            if os.path.lexists(candidate):
                return candidate
        if group in LOWERS and os.path.lexists(LOWERS[group] / rest):
            return LOWERS[group] / rest
        return None

    def passwd_entry(self, uid: int) -> tuple[int, str] | None:
        """(gid, home) of `uid` in the image's /etc/passwd."""
        found = self.find("/etc/passwd")
        if found is None:
            return None
        for line in found.read_text().splitlines():
            fields = line.split(":")
            if len(fields) >= 6 and fields[2] == str(uid):
                return int(fields[3]), fields[5]
        return None


def split_group(path: str) -> tuple[str, str]:
    parts = PurePosixPath(path).parts[1:]
    if parts and parts[0] in GROUPS:
        return parts[0], str(PurePosixPath(*parts[1:])) if parts[1:] else "."
    return "top", str(PurePosixPath(*parts)) if parts else "."


def _overlay(lowers: Sequence[Path], upper: Path | None, work: Path | None, target: str,
             read_only: bool = False) -> str:
    lower = ":".join(str(p) for p in lowers)
    if upper is None:
        if len(lowers) == 1:
            return f"mount --bind -o ro {shlex.quote(str(lowers[0]))} {shlex.quote(target)}"
        return f"mount -t overlay overlay -o ro,lowerdir={lower} {shlex.quote(target)}"
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    return f"mount -t overlay overlay -o {options} {shlex.quote(target)}" + (
        f" && mount -o remount,ro {shlex.quote(target)}" if read_only else "")


class Builder:
    """Builds the stages of one Dockerfile (each stage once per target/arguments)."""

    def __init__(self, dockerfile: Dockerfile, context: Path, workdir: Path) -> None:
        self.dockerfile, self.context, self.workdir = dockerfile, context, workdir
        self.cache: dict[tuple[str, tuple[tuple[str, str], ...]], Image] = {}
        self.base = self._base_layer()
        self.ignore = _dockerignore(context)

    def _base_layer(self) -> Layer:
        """The empty root standing in for python:3.11-slim around this machine's /usr, /etc."""
        layer = Layer(self.workdir / "base")
        top = layer.part("top")
        for name in ("dev", "proc", "sys", "run", "home", "srv", "opt", "mnt", "media",
                     "var/log", "var/lib", "var/cache", "var/tmp", "usr", "etc", ".uv-cache"):
            (top / name).mkdir(parents=True, exist_ok=True)
        (top / "tmp").mkdir(mode=0o1777)
        (top / "tmp").chmod(0o1777)
        (top / "root").mkdir(mode=0o700)
        for name in ("bin", "sbin", "lib", "lib64"):
            if Path(f"/usr/{name}").exists():
                (top / name).symlink_to(f"usr/{name}")
        usr = layer.part("usr") / "local" / "bin"
        usr.mkdir(parents=True)
        interpreter = Path("/usr/bin/python3.11")
        assert interpreter.exists(), "python:3.11-slim is stood in for by /usr/bin/python3.11"
        for name in ("python3", "python3.11", "python"):
            if not Path(f"/usr/local/bin/{name}").exists():
                (usr / name).symlink_to(interpreter)
        layer.part("etc").mkdir()
        return layer

    def build(self, target: str | None, args: Mapping[str, str] | None = None) -> Image:
        key = (target or "", tuple(sorted((args or {}).items())))
        if key not in self.cache:
            self.cache[key] = self._build(self.dockerfile.stage(target), dict(args or {}))
        return self.cache[key]

    def _build(self, stage: Stage, args: dict[str, str]) -> Image:
        names = {s.name for s in self.dockerfile.stages}
        if stage.base in names:
            parent = self.build(stage.base, args)
            image = Image(list(parent.layers), dict(parent.env), parent.workdir, parent.user,
                          list(parent.cmd), list(parent.entrypoint), list(parent.volumes))
        else:
            assert stage.base in BASE_IMAGES, f"no stand-in for the base image {stage.base}"
            image = Image([self.base], dict(BASE_IMAGES[stage.base]))
        layer = Layer(Path(tempfile.mkdtemp(prefix=f"{stage.name}-", dir=self.workdir)))
        for group in ("top", *GROUPS):
            layer.part(group).mkdir()
            layer.work(group).mkdir()
        image.layers.insert(0, layer)
        declared: dict[str, str] = {}  # the stage's ARGs, given or defaulted
        for instruction in stage.instructions:
            self._apply(image, layer, instruction, args, declared)
        return image

    def _apply(self, image: Image, layer: Layer, instruction: Instruction,
               args: Mapping[str, str], declared: dict[str, str]) -> None:
        keyword = instruction.keyword
        scope = {**declared, **image.env}
        if keyword == "ARG":
            name, _, default = instruction.text.partition("=")
            value = args.get(name, default or self.dockerfile.global_args.get(name) or "")
            declared[name] = value
        elif keyword == "ENV":
            for name, value in env_pairs(instruction.text):
                image.env[name] = expand(value, {**declared, **image.env})
        elif keyword == "WORKDIR":
            path = expand(instruction.text, scope)
            image.workdir = str(PurePosixPath(image.workdir) / path)
            if image.find(image.workdir) is None:
                group, rest = split_group(image.workdir)
                (layer.part(group) / rest).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            self._copy(image, layer, instruction, scope, args)
        elif keyword == "RUN":
            self._run(image, instruction.text, {**scope})
        elif keyword == "USER":
            image.user = expand(instruction.text, scope)
        elif keyword == "CMD":
            image.cmd = instruction.json_or_words() if instruction.text.startswith("[") else [
                "/bin/sh", "-c", instruction.text]
        elif keyword == "ENTRYPOINT":
            image.entrypoint = instruction.json_or_words()
        elif keyword == "VOLUME":
            image.volumes += [expand(v, scope) for v in instruction.json_or_words()]
        elif keyword == "EXPOSE":
            image.exposed += instruction.words()
        else:
            raise AssertionError(f"the image tests do not know {keyword}")

    def _copy(self, image: Image, layer: Layer, instruction: Instruction,
              scope: Mapping[str, str], args: Mapping[str, str]) -> None:
        words = [expand(w, scope) for w in instruction.words()]
        source_stage = None
        while words[0].startswith("--"):
            flag = words.pop(0)
            if flag.startswith("--from="):
                source_stage = flag.removeprefix("--from=")
            else:
                raise AssertionError(f"COPY {flag} is not supported here")
        *sources, dest = words
        target = str(PurePosixPath(image.workdir) / dest)
        for source in sources:
            origin = self._source(source_stage, source, args)
            into = target if not dest.endswith("/") else str(
                PurePosixPath(target) / Path(source).name)
            group, rest = split_group(into)
            out = layer.part(group) / rest
            out.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir() and not origin.is_symlink():
                shutil.copytree(origin, out, symlinks=True, dirs_exist_ok=True,
                                ignore=self._ignored if source_stage is None else None)
            else:
                shutil.copy2(origin, out, follow_symlinks=False)

    def _source(self, stage: str | None, source: str, args: Mapping[str, str]) -> Path:
        if stage is None:
            return self.context / source
        if stage.startswith(UV_IMAGE):
            version = stage.removeprefix(UV_IMAGE)
            out = subprocess.run([str(UV), "--version"], capture_output=True, text=True,
                                 check=True).stdout.split()
            assert out[1] == version, (
                f"the Dockerfile copies uv {version}, the bootstrap uv is {out[1]}")
            assert source == "/uv", source
            return UV
        found = self.build(stage, args).find(source)
        assert found is not None, f"COPY --from={stage}: {source} is not in that stage"
        return found

    def _ignored(self, directory: str, names: list[str]) -> list[str]:
        relative = Path(directory).relative_to(self.context)
        return [n for n in names if any(
            fnmatch.fnmatch(str(relative / n), p) or fnmatch.fnmatch(n, p.removeprefix("**/"))
            for p in self.ignore)]

    def _run(self, image: Image, command: str, scope: dict[str, str]) -> None:
        # harness-only: the shared uv cache (outside the image, so an `rm -rf /root/.cache`
        # removes nothing of it), copies rather than links (another mount), no Python download
        env = {**scope, "UV_CACHE_DIR": "/.uv-cache", "UV_LINK_MODE": "copy",
               "UV_PYTHON_DOWNLOADS": "never", "HOME": "/root",
               **{k: v for k, v in os.environ.items() if k in REGISTRY_SETTINGS}}
        cache = Path(os.environ.get("UV_CACHE_DIR") or Path.home() / ".cache" / "uv")
        cache.mkdir(parents=True, exist_ok=True)
        mount = self.workdir / "mnt-build"
        mount.mkdir(exist_ok=True)
        layer, lowers = image.layers[0], image.layers[1:]
        lines = ["set -e", _overlay([lw.part("top") for lw in lowers], layer.part("top"),
                                    layer.work("top"), str(mount))]
        for group in GROUPS:
            lines.append(_overlay([*(lw.part(group) for lw in lowers), LOWERS[group]],
                                  layer.part(group), layer.work(group), f"{mount}/{group}"))
        lines += [f"mount --rbind /dev {mount}/dev", f"mount --rbind /proc {mount}/proc",
                  f"mount --bind {shlex.quote(str(cache))} {mount}/.uv-cache",
                  "exec chroot " + shlex.join([
                      str(mount), "/usr/bin/env", "-i", "-C", image.workdir,
                      *(f"{k}={v}" for k, v in env.items()), "/bin/sh", "-c", command])]
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               "\n".join(lines)], capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL, timeout=900)
        image.build_log += f"RUN {command}\n{done.stdout}{done.stderr}\n"
        assert done.returncode == 0, f"RUN {command} failed:\n{done.stdout}{done.stderr}"


def _dockerignore(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    return [line.strip().rstrip("/") for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


# --- containers -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mount:
    """One writable or mounted path of a container.

    kind: `tmpfs` (compose tmpfs, mode 1777), `volume` (a new named volume: a copy of the
    image's directory there, with its owner and mode, else root 0755), `emptydir` (root 0777),
    `pvc` (a fresh claim: root 0755), `bind` (a file or directory of this machine),
    `files` (a directory of the given files, as a Kubernetes Secret volume)."""

    kind: str
    target: str
    read_only: bool = False
    source: Path | None = None
    files: Mapping[str, Path] = field(default_factory=dict)
    mode: int | None = None  # files: their mode (a Secret's defaultMode)


@dataclass
class Container:
    image: Image
    command: list[str] | None = None  # replaces ENTRYPOINT+CMD (k8s `command`; compose: CMD)
    args: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    read_only: bool = False
    user: int | None = None
    group: int | None = None
    fs_group: int | None = None

    def argv(self) -> list[str]:
        if self.command is not None:
            return [*self.command, *(self.args if self.args is not None else [])]
        return [*self.image.entrypoint,
                *(self.args if self.args is not None else self.image.cmd)]

    def identity(self) -> tuple[int, int, str]:
        uid = self.user if self.user is not None else int(self.image.user.split(":")[0])
        entry = self.image.passwd_entry(uid)
        gid = self.group if self.group is not None else (entry[0] if entry else 0)
        return uid, gid, entry[1] if entry else "/"


def _prepare(mount: Mount, image: Image, where: Path, fs_group: int | None) -> Path | None:
    """The directory (or file) of this machine a mount is made from (None: a tmpfs)."""
    if mount.kind == "tmpfs":
        return None
    if mount.kind == "bind":
        assert mount.source is not None and mount.source.exists(), mount
        return mount.source
    where.mkdir(parents=True)
    if mount.kind == "files":
        for name, source in mount.files.items():
            shutil.copyfile(source, where / name)
            (where / name).chmod(mount.mode if mount.mode is not None else 0o644)
            if fs_group is not None:
                os.chown(where / name, 0, fs_group)
        where.chmod(0o755)
        return where
    if mount.kind == "volume":
        seed = image.find(mount.target)
        if seed is not None and seed.is_dir():
            shutil.copytree(seed, where, symlinks=True, dirs_exist_ok=True)
            info = seed.stat()
            os.chown(where, info.st_uid, info.st_gid)
            where.chmod(stat.S_IMODE(info.st_mode))
        else:
            where.chmod(0o755)
        return where
    mode = {"emptydir": 0o777, "pvc": 0o755}[mount.kind]
    if fs_group is not None:  # the kubelet: group-owned by fsGroup, setgid, group-writable
        os.chown(where, 0, fs_group)
        mode |= 0o2070
    where.chmod(mode)
    return where


@contextlib.contextmanager
def run(container: Container, workdir: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start the container; stop it (its whole process group) on leaving."""
    process = subprocess.Popen(_command(container, workdir), stdin=subprocess.DEVNULL,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(10)


def run_to_exit(container: Container, workdir: Path, timeout: float = 120) -> tuple[int, str]:
    log = workdir / "output.log"
    with run(container, workdir, log) as process:
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            code = -1
    return code, log.read_text(errors="replace")


def _command(container: Container, workdir: Path) -> list[str]:
    image = container.image
    mount = workdir / "root"
    mount.mkdir()
    layer = Layer(workdir / "container")
    for group in ("top", *GROUPS):
        layer.part(group).mkdir(parents=True)
        layer.work(group).mkdir(parents=True)
    lowers = image.layers
    lines = ["set -e", _overlay([lw.part("top") for lw in lowers], layer.part("top"),
                                layer.work("top"), str(mount))]
    for group in GROUPS:
        lines.append(_overlay([*(lw.part(group) for lw in lowers), LOWERS[group]],
                              layer.part(group), layer.work(group), f"{mount}/{group}"))
    lines += [f"mount --rbind /dev {mount}/dev", f"mount --rbind /proc {mount}/proc"]
    targets = [m.target for m in container.mounts]
    assert len(set(targets)) == len(targets), f"a path is mounted twice: {targets}"
    for number, spec in enumerate(container.mounts):
        source = _prepare(spec, image, workdir / f"mount-{number}", container.fs_group)
        target = shlex.quote(f"{mount}{spec.target}")
        is_file = source is not None and source.is_file()
        lines.append(f"mkdir -p {shlex.quote(f'{mount}{PurePosixPath(spec.target).parent}')}")
        lines.append(f"touch {target}" if is_file else f"mkdir -p {target}")
        if source is None:
            lines.append(f"mount -t tmpfs -o mode=1777 tmpfs {target}")
        else:
            lines.append(f"mount --bind {shlex.quote(str(source))} {target}")
            if spec.read_only or spec.kind == "files":
                lines.append(f"mount -o remount,bind,ro {target}")
    if container.read_only:
        lines += [f"mount -o remount,ro {mount}{sub}" for sub in ("/usr", "/etc")]
        lines.append(f"mount -o remount,ro {mount}")
    uid, gid, home = container.identity()
    groups = [gid, *([container.fs_group] if container.fs_group is not None else [])]
    env = {**image.env, "HOME": home, **container.env}
    lines.append("exec chroot " + shlex.join([
        f"--userspec={uid}:{gid}", f"--groups={','.join(map(str, groups))}", str(mount),
        "/usr/bin/env", "-i", "-C", image.workdir, *(f"{k}={v}" for k, v in env.items()),
        *container.argv()]))
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(lines)]
