"""Production deployment: the Kubernetes manifests, the container image, the
systemd unit, obsd's configuration file and container metadata.

There is no Docker engine and no Kubernetes cluster here, so nothing is
deployed: the manifests (every document of deploy/k8s/**.yaml) and the
Dockerfile are validated by parsing them with python3-yaml and checking
the fields that matter; the Dockerfile's build stage is checked by building
exactly its COPY set, its runtime stage by comparing the packages it
installs with the libraries the built binaries need; the DaemonSet's
securityContext by running obsd with exactly its capabilities against a
server run by another user.

Two groups need obsd to be integrated with user/daemon/config.c and user/base/cgroup.c
and are skipped until `build/obsd --help` shows it:
  - config: --config FILE and --check-config (exit 0 valid, 2 invalid);
  - container metadata: a real uvicorn inside a cgroup v2 made by the test,
    named like a containerd container of a Kubernetes pod; obsd must report
    its container id and pod UID as span resource attributes
    (container.id, k8s.pod.uid in /api/traces) and, with --container-label,
    as labels of the http_* series (container_id, pod_uid in /metrics).
"""
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

import harness
from deploy_support import (
    API_PORT, BASE_IMAGE_PACKAGES, BUILD_NOT_NEEDED, CONFIG_DOC, DOCKERFILE, HOST_CONFIG, K8S,
    NAMESPACE, RUNTIME_ALLOWED, RUNTIME_REQUIRED, UNIT, AppDir, apt_closure, apt_installs,
    cap_mask, cgroup2_mount, cgroup_line_v2, config_integrated, container,
    container_metadata_integrated, copy_sources, Daemon, deps_build_packages,
    dockerfile_instructions, dockerfile_stages, dockerignore_allows, effective_caps, env_of, find,
    help_options, labels_match, load_manifests, manifest_files, mount_types, needed_libraries,
    obsd_help, package_of_soname, PodCgroup, run_obsd, series, setpriv_prefix, unit_settings,
    Uvicorn, with_tracefs_prefix, without_tracefs_prefix)

NOBODY = 65534
DS_CAPS = {"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH"}
NOT_IN_FILE = {"config", "check-config", "help", "verbose", "record", "replay"}
NAMESPACED = {"ServiceAccount", "ConfigMap", "DaemonSet", "Deployment", "Service", "PodMonitor"}

needs_config = pytest.mark.skipif(
    not config_integrated(),
    reason="obsd is not integrated with user/daemon/config.c yet: `build/obsd --help` shows no "
           "--config/--check-config")
needs_container_metadata = pytest.mark.skipif(
    not container_metadata_integrated(),
    reason="obsd is not integrated with user/base/cgroup.c yet: `build/obsd --help` does not mention "
           "container metadata")


@pytest.fixture(scope="module")
def docs():
    return load_manifests()


@pytest.fixture(scope="module")
def ds(docs):
    return find(docs, "DaemonSet", "obsd")


@pytest.fixture(scope="module")
def obsd_c(ds):
    return container(ds["spec"]["template"]["spec"], "obsd")


def obsd_config_text(docs) -> str:
    return find(docs, "ConfigMap", "obsd-config")["data"]["obsd.yaml"]


# -- manifests ----------------------------------------------------------------

def test_manifests_parse(docs):
    """Every document parses and is a Kubernetes object; namespaced ones live
    in the obs namespace, which `kubectl apply -f deploy/k8s/` creates first
    (files are applied in name order)."""
    assert manifest_files(), f"no manifests under {K8S}"
    for path, d in docs:
        name = d.get("metadata", {}).get("name")
        where = f"{path.relative_to(harness.REPO)}: {d.get('kind')} {name}"
        assert isinstance(d, dict) and d.get("apiVersion") and d.get("kind"), where
        assert d.get("metadata", {}).get("name"), where
        if d["kind"] in NAMESPACED:
            assert d["metadata"].get("namespace") == NAMESPACE, where
    ns = find(docs, "Namespace", NAMESPACE)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged", \
        "hostPID, hostPath and added capabilities need the privileged Pod Security level"
    top = sorted(p for p in K8S.glob("*.yaml"))
    first = list(yaml.safe_load_all(top[0].read_text()))
    assert [d["kind"] for d in first if d] == ["Namespace"], \
        f"{top[0].name} sorts first and must hold (only) the Namespace"
    crd_kinds = {"PodMonitor", "ServiceMonitor"}
    for p in top:
        kinds = {d["kind"] for d in yaml.safe_load_all(p.read_text()) if d}
        assert not kinds & crd_kinds, \
            f"{p.name}: Prometheus Operator kinds fail `kubectl apply -f deploy/k8s/` on " \
            f"clusters without the operator; keep them in deploy/k8s/monitoring/"


def test_daemonset_security(docs, ds, obsd_c):
    """hostPID; not privileged; exactly the capabilities obsd needs, all
    others dropped; no API token."""
    spec = ds["spec"]["template"]["spec"]
    assert spec.get("hostPID") is True
    assert not spec.get("hostNetwork")
    assert spec.get("automountServiceAccountToken") is False
    sa = find(docs, "ServiceAccount", spec["serviceAccountName"])
    assert sa["metadata"]["namespace"] == NAMESPACE
    sc = obsd_c["securityContext"]
    assert sc.get("privileged") in (None, False)
    assert sc.get("allowPrivilegeEscalation") is False
    assert sc.get("readOnlyRootFilesystem") is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == DS_CAPS, sc["capabilities"]["add"]
    raw = (K8S / "30-daemonset.yaml").read_text()
    assert re.search(r"#\s+privileged: true", raw), "the commented privileged fallback is missing"


def test_daemonset_mounts(ds, obsd_c, docs):
    """/sys/kernel/btf read-only and tracefs from the host; no other host
    path; the config file from its ConfigMap where --config looks."""
    vols = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in obsd_c["volumeMounts"]}
    host = {v["hostPath"]["path"]: name for name, v in vols.items() if "hostPath" in v}
    assert set(host) == {"/sys/kernel/btf", "/sys/kernel/tracing"}, \
        f"host paths {sorted(host)}: obsd needs BTF and tracefs only (hostPID gives /proc; " \
        f"nothing is pinned in /sys/fs/bpf)"
    for path, name in host.items():
        assert mounts[path]["name"] == name
        assert mounts[path].get("readOnly") is True, f"{path} must be mounted read-only"
    cfg_arg = [a for a in obsd_c["args"] if a.startswith("--config=")]
    assert len(cfg_arg) == 1, obsd_c["args"]
    cfg = Path(cfg_arg[0].split("=", 1)[1])
    m = mounts[str(cfg.parent)]
    cm = vols[m["name"]]["configMap"]["name"]
    assert cfg.name in find(docs, "ConfigMap", cm)["data"]


def test_daemonset_api_probes_resources(ds, obsd_c):
    spec = ds["spec"]["template"]["spec"]
    assert f"--listen=0.0.0.0:{API_PORT}" in obsd_c["args"]
    ports = {p["name"]: p for p in obsd_c["ports"]}
    assert ports["api"]["containerPort"] == API_PORT
    live, ready = obsd_c["livenessProbe"]["httpGet"], obsd_c["readinessProbe"]["httpGet"]
    assert (live["path"], live["port"]) == ("/health", "api")
    assert (ready["path"], ready["port"]) == ("/ready", "api")
    res = obsd_c["resources"]
    assert res["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert res["limits"] == {"cpu": "500m", "memory": "512Mi"}
    assert {"operator": "Exists"} in spec["tolerations"], "obsd must run on every node"


def test_otlp_env_reaches_the_collector(docs, obsd_c):
    """OTEL_EXPORTER_OTLP_ENDPOINT names the example collector's Service,
    whose pods receive OTLP/HTTP on that port and export traces."""
    url = urlparse(env_of(obsd_c)["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"])
    assert url.scheme == "http"
    svc_name, ns = url.hostname.split(".")[:2]
    svc = find(docs, "Service", svc_name)
    assert svc["metadata"]["namespace"] == ns
    port = [p for p in svc["spec"]["ports"] if p["port"] == url.port]
    assert port, f"Service {svc_name} has no port {url.port}"
    dep = [d for _, d in docs if d["kind"] == "Deployment"
           and labels_match(svc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
    assert len(dep) == 1, "the collector Service must select one Deployment"
    pod = dep[0]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    cport = [p for p in c["ports"] if p["name"] == port[0]["targetPort"]]
    assert cport and cport[0]["containerPort"] == 4318
    cm_name = [v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v][0]
    cm = find(docs, "ConfigMap", cm_name)
    cfg_file = [a.split("=", 1)[1] for a in c["args"] if a.startswith("--config=")][0]
    mount = [m for m in c["volumeMounts"] if cfg_file.startswith(m["mountPath"] + "/")][0]
    conf = yaml.safe_load(cm["data"][cfg_file[len(mount["mountPath"]) + 1:]])
    http = conf["receivers"]["otlp"]["protocols"]["http"]
    assert http["endpoint"].endswith(":4318")
    traces = conf["service"]["pipelines"]["traces"]
    assert "otlp" in traces["receivers"] and traces["exporters"]
    for p in traces["processors"]:
        assert p in conf["processors"], f"processor {p} used but not configured"
    assoc = [s["name"] for a in conf["processors"]["k8sattributes"]["pod_association"]
             for s in a["sources"]]
    assert "k8s.pod.uid" in assoc and "container.id" in assoc, \
        "the collector must associate by the attributes obsd sets (k8s.pod.uid, container.id)"


def test_service_and_podmonitor(docs, ds):
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert labels_match(ds["spec"]["selector"]["matchLabels"], labels)
    svc = find(docs, "Service", "obsd")
    assert labels_match(svc["spec"]["selector"], labels)
    assert svc["spec"]["ports"][0]["targetPort"] == "api"
    pm = find(docs, "PodMonitor", "obsd")
    assert labels_match(pm["spec"]["selector"]["matchLabels"], labels)
    assert NAMESPACE in pm["spec"]["namespaceSelector"]["matchNames"]
    ep = pm["spec"]["podMetricsEndpoints"][0]
    assert (ep["port"], ep["path"]) == ("api", "/metrics")


# -- configuration files ------------------------------------------------------

def documented_keys():
    """Keys of the table in docs/config.md: rows starting with | `key` |."""
    return re.findall(r"^\|\s*`([a-z][a-z0-9-]*)`\s*\|", CONFIG_DOC.read_text(), re.M)


def test_config_files_use_documented_keys(docs):
    """The shipped config files parse as one YAML mapping, use only keys
    documented in docs/config.md, and every documented key is an obsd option
    (once obsd has --config; container-label arrives with container metadata)."""
    keys = documented_keys()
    assert len(keys) >= 20 and len(keys) == len(set(keys)), keys
    for name, text in (("ConfigMap obsd-config", obsd_config_text(docs)),
                       (str(HOST_CONFIG), HOST_CONFIG.read_text())):
        cfg = yaml.safe_load(text) or {}
        assert isinstance(cfg, dict), name
        unknown = set(cfg) - set(keys)
        assert not unknown, f"{name}: keys {sorted(unknown)} are not in {CONFIG_DOC}"
    if config_integrated():
        opts = help_options(obsd_help())
        missing = {k for k in keys if k not in opts}
        if not container_metadata_integrated():
            missing.discard("container-label")
        assert not missing, f"documented config keys that obsd --help does not know: {missing}"
        undocumented = opts - set(keys) - NOT_IN_FILE
        assert not undocumented, f"obsd options missing from the config keys of {CONFIG_DOC} " \
                                 f"(and config_keys[] in user/daemon/config.c): {sorted(undocumented)}"


# -- Dockerfile ---------------------------------------------------------------

def test_dockerfile_stages():
    """Two stages, both Debian bookworm: `build` runs make, the runtime one
    installs only runtime libraries and copies the two binaries from it."""
    stages = dockerfile_stages(DOCKERFILE.read_text())
    assert len(stages) == 2, [s["from"] for s in stages]
    build, run = stages
    for s in stages:
        assert s["from"].startswith("debian:bookworm"), s["from"]
    assert build["name"] == "build"
    assert any(ins == "RUN" and re.search(r"\bmake\b.*\ball\b", a) for ins, a in build["ins"])
    pkgs = apt_installs(run)
    assert RUNTIME_REQUIRED <= pkgs, f"runtime stage misses {RUNTIME_REQUIRED - pkgs}"
    assert pkgs <= RUNTIME_ALLOWED, f"runtime stage installs more than runtime libraries: " \
                                    f"{sorted(pkgs - RUNTIME_ALLOWED)}"
    copies = [a for ins, a in run["ins"] if ins == "COPY"]
    assert copies and all(a.startswith("--from=build ") for a in copies)
    assert "/src/build/obsd" in copies[0] and "/src/build/obsctl" in copies[0]
    entry = [a for ins, a in run["ins"] if ins == "ENTRYPOINT"]
    assert entry and entry[-1].startswith("["), "ENTRYPOINT must be exec form"
    assert entry[-1].rstrip("]").rstrip('"').endswith("obsd"), entry


def test_dockerfile_runtime_libraries_cover_the_binaries(tmp_path):
    """Build the binaries from exactly the build stage's COPY set (what
    `docker build` would send and copy), then check that every library they
    link comes from a package the runtime stage installs (or one apt
    installs with it)."""
    stages = dockerfile_stages(DOCKERFILE.read_text())
    build, run = stages
    src = tmp_path / "src"
    src.mkdir()
    for s in copy_sources(build):
        assert dockerignore_allows(s), f"{s} is copied but excluded by {DOCKERFILE}.dockerignore"
        p = harness.REPO / s
        if p.is_dir():
            shutil.copytree(p, src / s.rstrip("/"))
        else:
            shutil.copy(p, src / s)
    r = subprocess.run(["make", "-j4", "all"], cwd=src, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"the build stage's COPY set does not build:\n{r.stdout[-3000:]}" \
                              f"\n{r.stderr[-3000:]}"
    pkgs = apt_closure(apt_installs(run)) | BASE_IMAGE_PACKAGES
    for b in ("obsd", "obsctl"):
        for so in needed_libraries(src / "build" / b):
            pkg = package_of_soname(so)
            assert pkg in pkgs, f"{b} needs {so} from {pkg}, which the runtime stage lacks"


def test_dockerfile_build_stage_has_the_build_dependencies():
    """The build stage installs every build package of scripts/deps.sh (but
    the sanitizer runtimes), so a new build dependency cannot be forgotten."""
    build = dockerfile_stages(DOCKERFILE.read_text())[0]
    missing = deps_build_packages() - BUILD_NOT_NEEDED - apt_installs(build)
    assert not missing, f"scripts/deps.sh builds with {sorted(missing)}; the Dockerfile's " \
                        f"build stage does not install them"


def test_dockerfile_instructions_sane():
    ins = dockerfile_instructions(DOCKERFILE.read_text())
    runs = [a for i, a in ins if i == "RUN" and "apt-get install" in a]
    assert all("--no-install-recommends" in a and "rm -rf /var/lib/apt/lists" in a for a in runs)


# -- systemd ------------------------------------------------------------------

def test_systemd_unit(tmp_path):
    """The unit runs obsd with the config file and the DaemonSet's
    capabilities, does not restart on a configuration error, and passes
    `systemd-analyze verify`."""
    u = unit_settings(UNIT.read_text())
    svc = u["Service"]
    exe, *args = svc["ExecStart"][0].split()
    assert exe.endswith("/obsd") and "--config" in args
    assert set(svc["CapabilityBoundingSet"][0].split()) == {f"CAP_{c}" for c in DS_CAPS}
    assert svc["Restart"] == ["on-failure"] and svc["RestartPreventExitStatus"] == ["2"]
    assert svc["NoNewPrivileges"] == ["yes"]
    assert svc.get("ProtectProc", ["default"]) == ["default"], "obsd must see every process"
    assert u["Install"]["WantedBy"] == ["multi-user.target"]
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    unit = tmp_path / "obsd.service"
    unit.write_text(UNIT.read_text().replace(exe, str(harness.OBSD)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


# -- the securityContext, for real ---------------------------------------------

@pytest.fixture
def app_dir():
    d = AppDir()
    yield d.path
    d.remove()


def test_obsd_runs_with_daemonset_capabilities(app_dir, ds, obsd_c):
    """obsd with exactly the DaemonSet's capabilities (as root, like the
    container) attaches and observes a server that runs as another user,
    naming its service from its command line. tracefs is mounted where the
    DaemonSet's hostPath puts it, in a mount namespace of obsd's own: the
    test does not depend on what the host or an earlier test mounted."""
    caps = obsd_c["securityContext"]["capabilities"]["add"]
    server = Uvicorn(app_dir, user=NOBODY)
    d = Daemon(["--port", server.port], prefix=with_tracefs_prefix() + setpriv_prefix(caps),
               name="obsd-caps")
    try:
        d.start()
        assert effective_caps(d.proc.pid) == cap_mask(caps), "harness: setpriv did not work"
        for _ in range(3):
            assert server.get("/text") == 200
        recs = harness.wait_records(d.requests, lambda: {server.pid}, 3)
        assert len(recs) == 3, f"obsd with capabilities {caps} saw {len(recs)} of 3 requests\n" \
                               f"{d.output()}"
        assert {r["service"] for r in recs} == {"app:app"}, [r["service"] for r in recs]
    finally:
        rc = d.stop()
        server.stop()
    assert rc == 0, f"obsd exited {rc} on SIGTERM"


def test_obsd_runs_without_tracefs(app_dir, ds, obsd_c):
    """A fresh host: obsd runs in a private mount namespace where every
    tracefs and debugfs mount was removed (the host keeps its own), with
    exactly the DaemonSet's capabilities, which cannot mount tracefs. It
    attaches, serves the requests of a server run by another user exactly,
    and still sees no tracefs when done (docs/deploy.md: requests are
    observed fully without tracefs)."""
    caps = obsd_c["securityContext"]["capabilities"]["add"]
    server = Uvicorn(app_dir, user=NOBODY)
    d = Daemon(["--port", server.port], prefix=without_tracefs_prefix() + setpriv_prefix(caps),
               name="obsd-no-tracefs")
    try:
        d.start()
        assert effective_caps(d.proc.pid) == cap_mask(caps), "harness: setpriv did not work"
        traced = [m for m in mount_types(d.proc.pid) if m[0] in ("tracefs", "debugfs")]
        assert not traced, f"harness: obsd's mount namespace still has {traced}"
        paths = ["/text", "/json", f"/users/{harness.uniq()}", "/nope"]
        assert [server.get(p) for p in paths] == [200, 200, 200, 404]
        recs = harness.wait_records(d.requests, lambda: {server.pid}, len(paths))
        got = sorted((r["path"], r["status"], r["outcome"]) for r in recs)
        want = sorted((p, st, "ok") for p, st in zip(paths, [200, 200, 200, 404]))
        assert got == want, f"obsd without tracefs: {got} != {want}\n{d.output()}"
        assert {r["service"] for r in recs} == {"app:app"}, [r["service"] for r in recs]
        traced = [m for m in mount_types(d.proc.pid) if m[0] in ("tracefs", "debugfs")]
        assert not traced, f"obsd mounted {traced} (it has no CAP_SYS_ADMIN)"
    finally:
        rc = d.stop()
        server.stop()
    assert rc == 0, f"obsd exited {rc} on SIGTERM"


# -- configuration (after integration) ---------------------------------------

@needs_config
def test_check_config(tmp_path, docs):
    """--check-config: 0 for the shipped files, 2 with FILE:LINE: key 'KEY'
    for a broken one, without loading anything."""
    for name, text in (("configmap.yaml", obsd_config_text(docs)),
                       ("host.yaml", HOST_CONFIG.read_text())):
        f = tmp_path / name
        f.write_text(text)
        r = run_obsd(["--check-config", "--config", f])
        assert r.returncode == 0, f"{name}: {r.stderr}"
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: 127.0.0.1:9464\nstore-size: many\n")
    r = run_obsd(["--check-config", "--config", bad])
    assert r.returncode == 2 and f"{bad}:2: key 'store-size'" in r.stderr, r.stderr
    bad.write_text("port: [8000\n")
    r = run_obsd(["--check-config", "--config", bad])
    assert r.returncode == 2 and f"{bad}:" in r.stderr and "key 'port'" in r.stderr, r.stderr
    bad.write_text("lisen: 1\n")
    r = run_obsd(["--check-config", "--config", bad])
    assert r.returncode == 2 and f"{bad}:1: key 'lisen': unknown key" in r.stderr, r.stderr


@needs_config
def test_config_precedence(tmp_path, app_dir):
    """The file's filters apply; a flag beats the file (listen); the
    environment beats the file (service-name, OTEL_SERVICE_NAME)."""
    server = Uvicorn(app_dir)
    other = Uvicorn(app_dir, name="server-deploy-other")
    file_port, flag_port = harness.free_port(), harness.free_port()
    cfg = tmp_path / "obsd.yaml"
    cfg.write_text(f"listen: 127.0.0.1:{file_port}\nport: [{server.port}]\n"
                   f"service-name: from-file\n")
    d = Daemon(["--config", cfg, "--listen", f"127.0.0.1:{flag_port}"],
               env={"OTEL_SERVICE_NAME": "from-env"}, name="obsd-config")
    try:
        d.start(listen_port=flag_port)
        assert not harness.listening(file_port), "the file's listen beat the flag"
        assert server.get("/text") == 200 and other.get("/text") == 200
        recs = harness.wait_records(d.requests, lambda: {server.pid, other.pid}, 1)
        assert {r["pid"] for r in recs} == {server.pid}, "the file's port filter was not applied"
        spans = [s for s in d.spans() if s["resource"]["process.pid"] == server.pid]
        assert spans and {s["resource"]["service.name"] for s in spans} == {"from-env"}
    finally:
        rc = d.stop()
        server.stop()
        other.stop()
    assert rc == 0


# -- container metadata (after integration) ----------------------------------

@pytest.fixture
def pod_cgroup():
    root = cgroup2_mount()
    if root is None:
        pytest.skip("no writable cgroup v2 hierarchy mounted")
    try:
        cg = PodCgroup(root)
    except OSError as e:
        pytest.skip(f"cannot create a cgroup under {root}: {e}")
    yield cg
    cg.close()


@needs_container_metadata
def test_container_metadata(pod_cgroup, app_dir, obsd_c):
    """A uvicorn inside <cgroup2>/obs-test.slice/obs-test-kubepods-pod<uid>.slice/
    cri-containerd-<id>.scope and one outside it. obsd (the DaemonSet's
    capabilities, --container-label) reports the first's container id and pod
    UID, and not the second's:
      /api/traces  resource "container.id" = <id>, "k8s.pod.uid" = <uid>
                   ("container.runtime", when present, = "containerd")
      /metrics     http_requests_total{...,container_id="<id>",pod_uid="<uid>"}
      /api/requests  container_id / pod_uid, when records carry them."""
    cg = pod_cgroup
    inside = Uvicorn(app_dir, cgroup=cg.path, name="server-container")
    outside = Uvicorn(app_dir, name="server-host")
    caps = obsd_c["securityContext"]["capabilities"]["add"]
    d = Daemon(["--port", inside.port, "--port", outside.port, "--container-label"],
               prefix=setpriv_prefix(caps), name="obsd-container")
    n_in, n_out = 5, 3
    try:
        assert cgroup_line_v2(inside.pid) == cg.relative(), \
            f"harness: the server is not in the test cgroup: {cgroup_line_v2(inside.pid)!r}"
        d.start()
        for _ in range(n_in):
            assert inside.get("/text") == 200
        for _ in range(n_out):
            assert outside.get("/json") == 200
        recs = harness.wait_records(d.requests, lambda: {inside.pid, outside.pid}, n_in + n_out)
        assert len(recs) == n_in + n_out, d.output()

        spans = d.spans()
        mine = [s for s in spans if s["resource"].get("process.pid") == inside.pid]
        theirs = [s for s in spans if s["resource"].get("process.pid") == outside.pid]
        assert len(mine) == n_in and len(theirs) == n_out, (len(mine), len(theirs))
        for s in mine:
            res = s["resource"]
            assert res.get("container.id") == cg.container_id, res
            assert res.get("k8s.pod.uid") == cg.pod_uid, res
            assert res.get("container.runtime", "containerd") == "containerd", res
        for s in theirs:
            assert s["resource"].get("container.id") != cg.container_id, s["resource"]

        text = d.metrics_text()
        reqs = list(series(text, "http_requests_total"))
        in_c = [(lab, v) for lab, v in reqs if lab.get("container_id") == cg.container_id]
        assert in_c, "no http_requests_total series with container_id=<id>:\n" + \
            "\n".join(l for l in text.splitlines() if l.startswith("http_requests_total"))
        assert all(lab.get("pod_uid") == cg.pod_uid for lab, _ in in_c), in_c
        assert sum(v for _, v in in_c) == n_in, in_c
        for r in recs:
            want = cg.container_id if r["pid"] == inside.pid else None
            if "container_id" in r:
                assert (r["container_id"] == cg.container_id) == (want is not None), r
    finally:
        rc = d.stop()
        inside.stop()
        outside.stop()
    assert rc == 0
