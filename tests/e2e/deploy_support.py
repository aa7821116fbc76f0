"""Support for the deployment tests (test_deploy.py): reading the Kubernetes
manifests, the Dockerfile and the systemd unit of deploy/; obsd's --help;
a test cgroup v2 named like a containerd container of a Kubernetes pod;
processes started with a reduced capability set (setpriv).

There is no container engine and no Kubernetes here: manifests and the
Dockerfile are checked by parsing them (python3-yaml), the Dockerfile's
build stage by building its COPY set, and the securityContext by running
obsd with exactly its capabilities.

Builds on harness.py (shared; not modified here)."""
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import yaml

import harness
from harness import HOST, HarnessError

DEPLOY = harness.REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
UNIT = DEPLOY / "obsd.service"
HOST_CONFIG = DEPLOY / "obsd.yaml"
CONFIG_DOC = harness.REPO / "docs" / "config.md"
NAMESPACE = "obs"
API_PORT = 9464

# Packages the runtime stage may install: the libraries obsd/obsctl link
# (ncurses and json-c: obsctl top) and the CA bundle libcurl needs for HTTPS
# endpoints.
RUNTIME_ALLOWED = {"libbpf1", "libelf1", "zlib1g", "libcurl4", "libprotobuf-c1", "libyaml-0-2",
                   "libncursesw6", "libjson-c5", "ca-certificates"}
# Build packages of scripts/deps.sh that `make all` does not need.
BUILD_NOT_NEEDED = {"libclang-rt-14-dev"}   # sanitizer runtimes: unit tests, fuzzing
DEPS_SH = harness.REPO / "scripts" / "deps.sh"
RUNTIME_REQUIRED = {"libbpf1", "libelf1", "zlib1g", "libcurl4", "libprotobuf-c1"}
BASE_IMAGE_PACKAGES = {"libc6"}     # in debian:bookworm-slim already


# -- obsd --help --------------------------------------------------------------

_help_cache: Optional[str] = None


def obsd_help() -> str:
    """`build/obsd --help`, or "" when obsd is not built."""
    global _help_cache
    if _help_cache is None:
        try:
            _help_cache = subprocess.run([str(harness.OBSD), "--help"], capture_output=True,
                                        text=True, timeout=10).stdout
        except OSError:
            _help_cache = ""
    return _help_cache


def help_options(text: str) -> set:
    """Long option names --help mentions."""
    return set(re.findall(r"--([a-z][a-z0-9-]*)", text))


def container_metadata_integrated() -> bool:
    """obsd was integrated with user/base/cgroup.c: its --help mentions containers."""
    return re.search(r"container", obsd_help(), re.I) is not None


def config_integrated() -> bool:
    """obsd was integrated with user/daemon/config.c: --config and --check-config."""
    opts = help_options(obsd_help())
    return "config" in opts and "check-config" in opts


# -- manifests ----------------------------------------------------------------

def manifest_files() -> List[Path]:
    return sorted(p for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml"))


def load_manifests() -> List[Tuple[Path, dict]]:
    """Every document of every manifest (empty documents skipped)."""
    out = []
    for p in manifest_files():
        with open(p) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    out.append((p, doc))
    return out


def find(docs, kind: str, name: str) -> dict:
    hits = [d for _, d in docs if d.get("kind") == kind and d["metadata"].get("name") == name]
    if len(hits) != 1:
        raise AssertionError(f"expected exactly one {kind} {name!r} in {K8S}, found {len(hits)}")
    return hits[0]


def container(pod_spec: dict, name: str) -> dict:
    for c in pod_spec.get("containers", []):
        if c.get("name") == name:
            return c
    names = [c.get("name") for c in pod_spec.get("containers", [])]
    raise AssertionError(f"no container {name!r} in {names}")


def env_of(c: dict) -> Dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def labels_match(selector: Dict[str, str], labels: Dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# -- Dockerfile ---------------------------------------------------------------

def dockerfile_instructions(text: str) -> List[Tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        word, _, rest = cur.partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    return out


def dockerfile_stages(text: str) -> List[dict]:
    """[{'from': image, 'name': alias or None, 'ins': [(INSTR, args), ...]}]"""
    stages = []
    for ins, args in dockerfile_instructions(text):
        if ins == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"from": parts[0], "name": name, "ins": []})
        elif stages:
            stages[-1]["ins"].append((ins, args))
    return stages


def apt_installs(stage: dict) -> set:
    """Packages named by `apt-get install` in a stage's RUN instructions."""
    pkgs = set()
    for ins, args in stage["ins"]:
        if ins != "RUN":
            continue
        for cmd in re.split(r"&&|;", args):
            words = cmd.split()
            if len(words) >= 2 and words[0] in ("apt-get", "apt") and "install" in words:
                after = words[words.index("install") + 1:]
                pkgs |= {w for w in after if not w.startswith("-")}
    return pkgs


def deps_build_packages() -> set:
    """The build_pkgs=(...) array of scripts/deps.sh."""
    m = re.search(r"build_pkgs=\((.*?)\)", DEPS_SH.read_text(), re.S)
    if not m:
        raise AssertionError(f"no build_pkgs=(...) in {DEPS_SH}")
    return set(m.group(1).split())


def copy_sources(stage: dict) -> List[str]:
    """Sources of the stage's COPY instructions from the build context."""
    out = []
    for ins, args in stage["ins"]:
        if ins == "COPY" and "--from" not in args:
            words = [w for w in args.split() if not w.startswith("--")]
            out += words[:-1]
    return out


def dockerignore_allows(path: str) -> bool:
    """The path is sent to the build by deploy/Dockerfile.dockerignore (its
    '*' then '!name' form; the last matching line wins)."""
    allowed = True
    name = path.rstrip("/").split("/")[0]
    for line in DOCKERIGNORE.read_text().splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        neg = s.startswith("!")
        pat = s[1:].rstrip("/") if neg else s.rstrip("/")
        if pat == "*" or pat == name:
            allowed = neg
    return allowed


def needed_libraries(binary: Path) -> List[str]:
    out = subprocess.run(["objdump", "-p", str(binary)], capture_output=True, text=True,
                         check=True).stdout
    return re.findall(r"NEEDED\s+(\S+)", out)


def apt_closure(pkgs: set) -> set:
    """pkgs and everything apt installs with them (Depends, recursively)."""
    out = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                          "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"]
                         + sorted(pkgs), capture_output=True, text=True, check=True).stdout
    return {l.strip().split(":")[0] for l in out.splitlines() if l and not l[0].isspace()
            and not l.startswith("<")} | set(pkgs)


def package_of_soname(soname: str) -> str:
    """The Debian package that ships a shared library (dpkg -S)."""
    out = subprocess.run(["dpkg", "-S", soname], capture_output=True, text=True).stdout
    for line in out.splitlines():
        pkg, _, path = line.partition(": ")
        if path.strip().endswith("/" + soname) and "-dev" not in pkg:
            return pkg.split(":")[0]
    raise AssertionError(f"no Debian package ships {soname} (dpkg -S: {out!r})")


# -- systemd unit -------------------------------------------------------------

def unit_settings(text: str) -> Dict[str, Dict[str, List[str]]]:
    """{section: {key: [values in order]}}"""
    out: Dict[str, Dict[str, List[str]]] = {}
    sec = None
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("[") and s.endswith("]"):
            sec = s[1:-1]
            out.setdefault(sec, {})
            continue
        k, _, v = s.partition("=")
        out.setdefault(sec or "", {}).setdefault(k.strip(), []).append(v.strip())
    return out


# -- capabilities -------------------------------------------------------------

def setpriv_prefix(caps: Sequence[str]) -> List[str]:
    """Run a command as root with exactly `caps` (Kubernetes names: BPF,
    PERFMON...): the bounding set limits what exec grants uid 0, like a
    container's securityContext."""
    bset = ",".join(["-all"] + [f"+{c.lower()}" for c in caps])
    return ["setpriv", "--inh-caps=-all", f"--bounding-set={bset}"]


# -- tracefs -------------------------------------------------------------------

TRACEFS = "/sys/kernel/tracing"

# The fstype of every mount of this process (/proc/self/mountinfo: the field
# after " - "), with its mount point: "fstype mountpoint" lines.
_MOUNTS_AWK = 'awk \'{for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 1), $5; break }}\' /proc/self/mountinfo'


def with_tracefs_prefix() -> List[str]:
    """Run a command in a private mount namespace of its own where tracefs is
    mounted on /sys/kernel/tracing, as the DaemonSet's hostPath provides it:
    whatever the host has mounted, and the host is left untouched."""
    script = (f'mountpoint -q {TRACEFS} || mount -t tracefs nodev {TRACEFS} || '
              f'{{ echo "cannot mount tracefs" >&2; exit 97; }}; exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]


def without_tracefs_prefix() -> List[str]:
    """Run a command in a private mount namespace of its own with every
    tracefs and debugfs mount removed (a fresh host: nothing mounted on
    /sys/kernel/tracing or /sys/kernel/debug). Mounts can be stacked, and
    tracefs sits under debugfs: unmount until none is left. The host's
    mounts are untouched."""
    list_ = f'{_MOUNTS_AWK} | awk \'$1 == "tracefs" || $1 == "debugfs" {{ print $2 }}\''
    script = (f'for i in 1 2 3 4 5 6 7 8 9 10; do m=$({list_} | sort -r); [ -z "$m" ] && break; '
              f'for p in $m; do umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null; done; done; '
              f'if [ -n "$({list_})" ]; then echo "tracefs/debugfs still mounted: $({list_})" >&2; '
              f'exit 97; fi; exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]


def mount_types(pid: int) -> List[Tuple[str, str]]:
    """(fstype, mount point) of every mount pid sees."""
    out = []
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        out.append((right.split()[0], left.split()[4]))
    return out


CAP_BITS = {"BPF": 39, "PERFMON": 38, "SYS_PTRACE": 19, "DAC_READ_SEARCH": 2,
            "SYS_ADMIN": 21, "NET_ADMIN": 12, "SYS_RESOURCE": 24}


def cap_mask(caps: Sequence[str]) -> int:
    return sum(1 << CAP_BITS[c] for c in caps)


def effective_caps(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    raise AssertionError("no CapEff")


# -- processes ----------------------------------------------------------------

class Daemon:
    """obsd started with a command prefix (setpriv), an environment and
    arguments; ready when GET /ready answers 200."""

    def __init__(self, args: Sequence[str], prefix: Sequence[str] = (),
                 env: Optional[Dict[str, str]] = None, name: str = "obsd-deploy"):
        harness.require_binary(harness.OBSD)
        self.port = harness.free_port()
        self.args = list(map(str, args))
        self.prefix = list(prefix)
        self.env = dict(env or {})
        self.name = name
        self.proc = None

    def cmd(self) -> List[str]:
        return self.prefix + [str(harness.OBSD), "--listen", f"{HOST}:{self.port}"] + self.args

    def start(self, listen_port: Optional[int] = None) -> "Daemon":
        """listen_port: where the API will be (when args set --listen themselves)."""
        cmd = self.cmd() if listen_port is None else self.prefix + [str(harness.OBSD)] + self.args
        if listen_port is not None:
            self.port = listen_port
        saved = dict(os.environ)
        try:
            for k in list(os.environ):
                if k.startswith(("OTEL_", "SENTRY_")):
                    del os.environ[k]
            os.environ.update(self.env)
            self.proc = harness.spawn(cmd, self.name)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        deadline = time.monotonic() + harness.READY_TIMEOUT
        last = None
        while True:
            if self.proc.poll() is not None:
                raise HarnessError(f"obsd exited {self.proc.returncode} before /ready was 200 "
                                   f"({self.proc.cmd_str})\n{self.output()}")
            try:
                st, body = self.get("/ready", timeout=2)
                last = f"{st} {body[:200]!r}"
                if st == 200:
                    return self
            except OSError as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise HarnessError(f"obsd /ready not 200 within {harness.READY_TIMEOUT}s "
                                   f"(last: {last}; {self.proc.cmd_str})\n{self.output()}")
            time.sleep(0.1)

    def get(self, path: str, timeout: float = 10.0):
        c = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def get_json(self, path: str):
        st, body = self.get(path)
        if st != 200:
            raise HarnessError(f"obsd GET {path} -> {st}: {body[:300]!r}")
        return json.loads(body)

    def requests(self) -> List[dict]:
        return self.get_json("/api/requests?limit=100000")["requests"]

    def spans(self) -> List[dict]:
        return self.get_json("/api/traces?limit=100000")["spans"]

    def metrics_text(self) -> str:
        st, body = self.get("/metrics")
        if st != 200:
            raise HarnessError(f"obsd /metrics -> {st}")
        return body.decode()

    def stop(self) -> Optional[int]:
        if self.proc is None:
            return None
        rc = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(harness.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                rc = None
        else:
            rc = self.proc.returncode
        harness.kill_group(self.proc, signal.SIGKILL, 0.1)
        self.proc = None
        return rc

    def output(self) -> str:
        return harness.tail(self.proc.log_path) if self.proc else "<not started>"


def run_obsd(args: Sequence[str], env: Optional[Dict[str, str]] = None,
             timeout: float = 20) -> subprocess.CompletedProcess:
    """obsd run to completion (--check-config, --help)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_"))}
    e.update(env or {})
    return subprocess.run([str(harness.OBSD)] + list(map(str, args)), capture_output=True,
                          text=True, timeout=timeout, env=e)


class AppDir:
    """A world-readable directory holding tests/e2e/app.py, for servers that
    run as another user (pytest's tmp_path is private to root)."""

    def __init__(self):
        self.path = Path(tempfile.mkdtemp(prefix="obs-deploy-app."))
        os.chmod(self.path, 0o755)
        shutil.copy(harness.HERE / "app.py", self.path / "app.py")
        os.chmod(self.path / "app.py", 0o644)

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


class Uvicorn:
    """uvicorn (h11, asyncio) serving app.py on a free port, optionally as
    another user and/or inside a cgroup v2 it joins before exec."""

    def __init__(self, app_dir: Path, user: Optional[int] = None,
                 cgroup: Optional[Path] = None, name: str = "server-deploy"):
        self.port = harness.free_port()
        py = [harness.PY, "-m", "uvicorn", "--host", HOST, "--port", str(self.port),
              "--http", "h11", "--loop", "asyncio", "--log-level", "warning", "app:app"]
        if user is not None:
            py = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + py
        if cgroup is not None:
            # join the cgroup first, then become the server: it never runs outside
            py = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(cgroup)] + py
        self.proc = harness.spawn(py, name, cwd=str(app_dir))
        deadline = time.monotonic() + harness.READY_TIMEOUT
        while not harness.listening(self.port):
            if self.proc.poll() is not None:
                raise HarnessError(f"uvicorn exited {self.proc.returncode} ({self.proc.cmd_str})\n"
                                   f"{harness.tail(self.proc.log_path)}")
            if time.monotonic() > deadline:
                raise HarnessError(f"uvicorn not listening on {self.port}\n"
                                   f"{harness.tail(self.proc.log_path)}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, path: str) -> int:
        c = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()

    def stop(self):
        harness.kill_group(self.proc)


# -- cgroups ------------------------------------------------------------------

def cgroup2_mount() -> Optional[Path]:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup on unified
    hosts, /sys/fs/cgroup/unified on hybrid ones), or None."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"]:
            mnt = Path(left.split()[4])
            if "rw" in left.split()[5].split(","):
                return mnt
    return None


class PodCgroup:
    """A cgroup v2 shaped like a containerd container of a guaranteed-QoS
    Kubernetes pod (systemd driver), under a test slice of our own:

      <cgroup2>/obs-test.slice/obs-test-kubepods-pod<uid_>.slice/cri-containerd-<id>.scope

    Removed at close: its processes are moved to the root cgroup first."""

    def __init__(self, root: Path):
        self.container_id = secrets.token_hex(32)
        self.pod_uid = str(uuid.uuid4())
        self.root = root
        self.top = root / "obs-test.slice"
        pod = self.top / f"obs-test-kubepods-pod{self.pod_uid.replace('-', '_')}.slice"
        self.path = pod / f"cri-containerd-{self.container_id}.scope"
        self.path.mkdir(parents=True)

    def relative(self) -> str:
        return "/" + str(self.path.relative_to(self.root))

    def procs(self, path: Optional[Path] = None) -> List[int]:
        try:
            return [int(x) for x in ((path or self.path) / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def close(self):
        dirs = sorted((p for p in self.top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in dirs + [self.top]:
            deadline = time.monotonic() + 5
            while d.exists():
                for pid in self.procs(d):
                    try:
                        (self.root / "cgroup.procs").write_text(str(pid))
                    except OSError:
                        pass
                try:
                    d.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


def cgroup_line_v2(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    return ""


# -- Prometheus text ----------------------------------------------------------

_SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def series(text: str, name: str) -> Iterator[Tuple[Dict[str, str], float]]:
    """(labels, value) of every sample of metric `name`."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _SERIES.match(line)
        if m and m.group(1) == name:
            yield dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))
