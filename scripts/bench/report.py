"""Turn the raw outputs collected by scripts/bench.sh into the benchmark report.

Usage: report.py RESULTS_DIR
RESULTS_DIR layout (written by bench.sh); <b> is an obsd binary: b0 (the
baseline revision, absent with BENCH_BASELINE=none) or b1 (current build/obsd):
  machine.txt                  key=value lines (nproc, kernel, cpu, clk_tck, ...)
  params.txt                   key=value lines (pairs, duration, wrk args, bins,
                               label_b0, label_b1, ...)
  wrk/{uv,ng}-{A,<b>}-<i>.txt  wrk --latency outputs of interleaved round i
  wrk/uv-C-<i>.txt             the prometheus_client middleware app, round i
  wrk/{A,C,<b>}-<i>.foreign    other sessions' obs instances loaded at that run
  wrk/order-<i>                the order of round i's runs
  cpu/{uv,ng,dd}-<b>-<i>.txt   obsd utime+stime ticks before and after the run
  dd/{A,<b>,F,L,H}-<i>.txt     wall microseconds of the dd of round i (F: the syscall
                               tracepoints doing nothing; L: the current obsd before
                               it attached them; L-<i>.attached: 1 if it did meanwhile;
                               H: the current obsd with --syscall-hooks off)
  prom/metrics.txt             the middleware app's /metrics after the rounds
  bpf/<b>/ids                  that obsd's program ids
  bpf/<b>/{uv,ng,ux,ut}-{before,after}.json, -metrics-{before,after}.txt
                               bpf_stats run: uv/ng wrk (-wrk.txt); ux = UNIX
                               uvicorn, ut = TCP uvicorn, both driven by
                               keepalive_load.py (-load.kv)
  loss/<b>/{uv,ng}-{wrk,metrics}.txt
  cg/<b>/{full1,full2,empty,ka}.{out,json}  callgrind outputs, replay summaries
  cg/<b>/{full1,ka}.{annot,self}  callgrind_annotate, inclusive and self
  cg/<b>/ab.{txt,kv}, cg/<b>/ka.kv  the loads that made that binary's recordings
  idle/<b>/{before,after}.status, metrics-{before,open,closed}.txt, client
Prints figures only, each next to its target with a marker saying whether it
is met: the machine is shared, nothing here is a pass/fail.
"""
import json
import os
import re
import statistics
import sys

D = sys.argv[1]


def path(*p):
    return os.path.join(D, *p)


def read(*p):
    try:
        with open(path(*p)) as f:
            return f.read()
    except OSError:
        return None


def kv(*p):
    out = {}
    for line in (read(*p) or "").splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def wrk(*p):
    text = read(*p)
    if not text:
        return None
    r = {"rps": None, "requests": None, "p50": None, "p99": None, "errors": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", text)
    if m:
        r["requests"] = int(m.group(1))
    for pct, val, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        r["p" + pct] = float(val) * UNIT_US[unit]
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        r["errors"] += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        r["errors"] += sum(int(x) for x in m.groups())
    return r


def metrics(*p):
    out = {}
    for line in (read(*p) or "").splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


def msum(m, prefix, contains=""):
    """Sum of the series whose name starts with prefix and contains the text."""
    return sum(v for n, v in m.items() if n.startswith(prefix) and contains in n)


def status(*p):
    out = {}
    for line in (read(*p) or "").splitlines():
        m = re.match(r"(Vm\w+):\s+(\d+) kB", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_n(x, nd=0):
    if x is None:
        return "n/a"
    return f"{x:,.{nd}f}"


def fmt_ns(ns):
    return "n/a" if ns is None else f"{ns:,.0f} ns"


def fmt_us(us):
    if us is None:
        return "n/a"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} us"


def fmt_ratio(r):
    if r is None:
        return "n/a"
    return f"{r:.3f} ({(r - 1) * 100:+.1f}%)"


def ratio(b, a):
    return b / a if a and b is not None else None


def table(rows, head=None, w0=46, w=24):
    """Rows of cells; a cell longer than its column still gets one space after it."""
    def line(cells):
        out = ""
        for c, width in zip(cells, [w0] + [w] * (len(cells) - 1)):
            out += str(c).ljust(width - 1) + " "
        return "  " + out.rstrip()
    if head:
        print(line([""] + head))
    for row in rows:
        print(line(row))


machine = kv("machine.txt")
params = kv("params.txt")
pairs = int(params.get("pairs", "0"))
tick = float(machine.get("clk_tck", "100"))
BINS = params.get("bins", "b1").split()
LABEL = {b: params.get(f"label_{b}", b) for b in BINS}
ROUNDS = range(1, pairs + 1)
SERVERS = [("uv", "uvicorn /text"), ("ng", "nginx /small.txt")]
SNAME = dict(SERVERS)
COND = {"A": "A: no obsd", "C": "C: prometheus_client", **{b: f"{b.upper()}: {LABEL[b]}" for b in BINS},
        "F": "F: features' floor"}


# ================================ figures ================================

# ---- throughput and latency (interleaved rounds) ----
runs = {}	# (server, condition) -> [wrk result or None per round]
for key, _ in SERVERS:
    for c in ["A", "C"] + BINS + ["F"]:
        if c == "C" and key != "uv":
            continue
        runs[key, c] = [wrk("wrk", f"{key}-{c}-{i}.txt") for i in ROUNDS]
        if c == "F" and not any(runs[key, c]):	# before the sixth round: no F runs
            del runs[key, c]


def per_round(key, c, field):
    """Per-round ratios condition / A of one wrk field."""
    return [ratio(b[field], a[field]) for a, b in zip(runs[key, "A"], runs[key, c])
            if a and b and a[field] and b[field] is not None]


thr = {}
for (key, c), rs in runs.items():
    ok = [r for r in rs if r]
    s = {"rps": med([r["rps"] for r in ok]), "p99": med([r["p99"] for r in ok]),
         "p50": med([r["p50"] for r in ok]), "err": sum(r["errors"] for r in ok)}
    if c != "A":
        s["rps_ratio"] = med(per_round(key, c, "rps"))
        s["p99_ratio"] = med(per_round(key, c, "p99"))
    thr[key, c] = s

# ---- dd: node-wide tax on a process that uses no socket ----
def dd_s(c, i):
    t = (read("dd", f"{c}-{i}.txt") or "").strip()
    return int(t) / 1e6 if t.isdigit() else None


# F: the syscall tracepoints doing nothing; L: the current obsd before it
# attached them (no Python process or HTTP server seen); H: the current obsd
# with --syscall-hooks off
DD_EXTRA = [c for c in ("F", "L", "H") if any(dd_s(c, i) for i in ROUNDS)]
dd = {c: [dd_s(c, i) for i in ROUNDS] for c in ["A"] + BINS + DD_EXTRA}
dd_ratio = {b: med([ratio(y, x) for x, y in zip(dd["A"], dd[b]) if x and y]) for b in BINS + DD_EXTRA}
dd_l_attached = sum(int((read("dd", f"L-{i}.attached") or "0").strip() or 0) for i in ROUNDS)


def ticks(*p):
    t = (read(*p) or "").split()
    return (float(t[1]) - float(t[0])) / tick if len(t) == 2 else None


dd_cpu = {b: med([ticks("cpu", f"dd-{b}-{i}.txt") for i in ROUNDS]) for b in BINS}

# ---- userspace CPU per request ----
def cpu_runs(b, key, results):
    """obsd's CPU per request (us) in each run of key (wrk results by round)."""
    xs = []
    for i, w in zip(ROUNDS, results):
        t = ticks("cpu", f"{key}-{b}-{i}.txt")
        if t is not None and w and w["requests"]:
            xs.append(t / w["requests"] * 1e6)
    return xs


cpu = {}
for b in BINS:
    for key, _ in SERVERS:
        cpu[b, key] = cpu_runs(b, key, runs[key, b])
    # uw: a second uvicorn run, obsd warm (section 4 only)
    cpu[b, "uw"] = cpu_runs(b, "uw", [wrk("wrk", f"uw-{b}-{i}.txt") for i in ROUNDS])


# ---- kernel cost: bpf_stats ----
def bpf_run(b, s):
    d = ("bpf", b)
    ids = set((read(*d, "ids") or "").split())
    try:
        before = {str(p["id"]): p for p in json.loads(read(*d, f"{s}-before.json"))}
        after = {str(p["id"]): p for p in json.loads(read(*d, f"{s}-after.json"))}
    except (TypeError, ValueError):
        return None
    per = {}
    for i in ids:
        if i not in after:
            continue
        a, z = after[i], before.get(i, {})
        name = a.get("name", i)
        ns = a.get("run_time_ns", 0) - z.get("run_time_ns", 0)
        cnt = a.get("run_cnt", 0) - z.get("run_cnt", 0)
        pns, pcnt = per.get(name, (0, 0))
        per[name] = (pns + ns, pcnt + cnt)
    if s in ("uv", "ng"):
        w = wrk(*d, f"{s}-wrk.txt")
        req, rps = (w["requests"], w["rps"]) if w else (None, None)
        failed = w["errors"] if w else None
    else:
        load = kv(*d, f"{s}-load.kv")
        req = int(load["requests"]) if load.get("requests", "").isdigit() else None
        secs = float(load.get("seconds") or 0)
        rps = req / secs if req and secs else None
        failed = int(load["failed"]) if load.get("failed", "").isdigit() else None
    m0, m1 = metrics(*d, f"{s}-metrics-before.txt"), metrics(*d, f"{s}-metrics-after.txt")
    svc = {"uv": "bench-tcp", "ut": "bench-tcp", "ux": "bench-unix"}.get(s)
    seen = (msum(m1, "http_requests_total{", f'service="{svc}"')
            - msum(m0, "http_requests_total{", f'service="{svc}"')) if svc else None
    seen_all = msum(m1, "obs_requests_total{") - msum(m0, "obs_requests_total{")
    ns = sum(v[0] for v in per.values())
    cnt = sum(v[1] for v in per.values())
    records = msum(m1, "obs_events_total") - msum(m0, "obs_events_total")	# ring records written
    return {"ids": len(ids), "per": per, "ns": ns, "cnt": cnt, "req": req, "rps": rps, "failed": failed,
            "rec_req": records / req if req and m1 else None,
            "seen": seen if m1 else None, "seen_all": seen_all if m1 else None,
            "ns_req": ns / req if req else None, "cnt_req": cnt / req if req else None,
            "ns_run": ns / cnt if cnt else None}


bpf = {(b, s): bpf_run(b, s) for b in BINS for s in ("uv", "ng", "ux", "ut")}


def bget(b, s, f):
    r = bpf.get((b, s))
    return r[f] if r else None


# ---- 3b. the kernel's floor: obsd's socket hooks next to a minimal observer ----
SOCK_PROGS = ("sock_recv", "sock_send")


def floor_burst(kind, s, k):
    """{"req", "ns" (all programs), "sock" (the socket hooks' ns), "per"} of one burst."""
    d = ("floor", f"{kind}-{s}-{k}")
    w = wrk(*d, "wrk.txt")
    if not w or not w["requests"]:
        return None
    if kind == "obsd":
        ids = set((read(*d, "ids") or "").split())
        try:
            before = {str(p["id"]): p for p in json.loads(read(*d, "before.json"))}
            after = {str(p["id"]): p for p in json.loads(read(*d, "after.json"))}
        except (TypeError, ValueError):
            return None
        per = {}
        for i in ids & set(after):
            name = after[i].get("name", i)
            per[name] = (per.get(name, 0) + after[i].get("run_time_ns", 0)
                         - before.get(i, {}).get("run_time_ns", 0))
        sock = sum(v for n, v in per.items() if n in SOCK_PROGS)
        return {"req": w["requests"], "ns": sum(per.values()), "sock": sock, "per": per}
    ns = sock = 0
    for line in (read(*d, "floor.txt") or "").splitlines():
        parts = line.split()
        if len(parts) == 3:
            ns += int(parts[2])
            if parts[0].startswith(("f_recv_", "f_send_")):
                sock += int(parts[2])
    return {"req": w["requests"], "ns": ns, "sock": sock, "per": {}} if ns else None


def floor_bursts(kind, s):
    return [r for r in (floor_burst(kind, s, k) for k in range(1, 10)) if r]


def least_burst(kind, s):
    """The burst of that kind with the least BPF time per request, or None."""
    bs = floor_bursts(kind, s)
    return min(bs, key=lambda r: r["ns"] / r["req"]) if bs else None


def floor_min(kind, s, field="ns"):
    """The least ns per request of field over the bursts (noise only adds)."""
    v = [r[field] / r["req"] for r in floor_bursts(kind, s)]
    return min(v) if v else None


def floor_ns(s):
    """obs's features at their floor on that server: a reader of bytes (a
    timestamped record per read and write with the bytes moved copied in)
    keeping per-socket state, and the loop and log syscall hooks doing
    nothing; all of obsd's programs are set against it."""
    return floor_min("full", s)


# ---- callgrind ----
def cg_total(b, name):
    text = read("cg", b, f"{name}.out") or ""
    m = re.search(r"^(?:totals|summary):\s+(\d+)", text, re.M)
    try:
        summary = json.loads(read("cg", b, f"{name}.json") or "")
    except ValueError:
        summary = {}
    return (int(m.group(1)) if m else None), summary


cg = {}
for b in BINS:
    full1, s1 = cg_total(b, "full1")
    full2, _ = cg_total(b, "full2")
    empty, _ = cg_total(b, "empty")
    ka, ska = cg_total(b, "ka")
    nreq = (s1.get("requests_ok", 0) + s1.get("requests_failed", 0)) if s1 else 0
    nka = (ska.get("requests_ok", 0) + ska.get("requests_failed", 0)) if ska else 0
    cg[b] = {"full1": full1, "full2": full2, "empty": empty, "ka": ka, "s1": s1, "ska": ska,
             "nreq": nreq, "nka": nka,
             "ipr": (full1 - empty) / nreq if full1 and empty is not None and nreq else None,
             "ipr_ka": (ka - empty) / nka if ka and empty is not None and nka else None}

# ---- loss ----
loss = {}
for b in BINS:
    for key, _ in SERVERS:
        m = metrics("loss", b, f"{key}-metrics.txt")
        loss[b, key] = {"wrk": wrk("loss", b, f"{key}-wrk.txt"), "m": m,
                        "lost": msum(m, "obs_events_lost_total{") if m else None}

# ---- memory with idle connections ----
IDLE_N = int(params.get("idle_n", "0") or 0)
TARGET_CONNS = 10000
idle = {}
for b in BINS:
    nb, na = status("idle", b, "before.status"), status("idle", b, "after.status")
    cl = kv("idle", b, "client")
    opened = int(cl.get("opened", "0") or 0)
    per_conn = ((na["VmRSS"] - nb["VmRSS"]) * 1024 / opened
                if opened and na.get("VmRSS") and nb.get("VmRSS") else None)
    rss_mb = na["VmRSS"] / 1024 if na.get("VmRSS") else None
    est = None
    if per_conn is not None and nb.get("VmRSS"):
        est = (nb["VmRSS"] * 1024 + per_conn * TARGET_CONNS) / 2**20
    idle[b] = {"before": nb, "after": na, "client": cl, "opened": opened, "per_conn": per_conn,
               "rss_mb": rss_mb, "est_mb": est,
               "m0": metrics("idle", b, "metrics-before.txt"), "mo": metrics("idle", b, "metrics-open.txt"),
               "mc": metrics("idle", b, "metrics-closed.txt")}


# ================================ report ================================

def target_met(x, op, t):
    if x is None or op is None:
        return None
    return {"<=": x <= t, ">=": x >= t, "==": x == t}[op]


def cell(x, fmt, op=None, t=None, note=""):
    if x is None:
        return "n/a"
    met = target_met(x, op, t)
    mark = "" if met is None else ("  met" if met else "  MISSED")
    return f"{fmt(x)}{note}{mark}"


def r3(x):
    return f"{x:.3f}"


def fmt_n3(x):
    return "n/a" if x is None else r3(x)


print("=" * 110)
print("obs benchmark  --  figures, not verdicts: this machine is shared and noisy "
      "(other sessions run tests concurrently)")
print("=" * 110)
print(f"Machine: {machine.get('nproc')} CPUs ({machine.get('cpu')}), kernel {machine.get('kernel')}, "
      f"{machine.get('mem')} RAM")
print(f"Load average at start: {machine.get('load_start')}   at end: {machine.get('load_end')}")
print(f"Versions: {machine.get('versions')}")
print(f"Date: {machine.get('date')}   total bench time: {machine.get('elapsed')} s")
print("obsd binaries: " + "; ".join(f"{b.upper()} = {LABEL[b]}" for b in BINS)
      + ("" if "b0" in BINS else "   (BENCH_BASELINE=none: no baseline)"))
if params.get("same_sources"):
    print("  (baseline and current are built from the same obsd sources: their differences show this"
          " machine's noise)")
print()

# ---- summary ----
W0, WT, WV = 46, 10, 28
print("Summary: each figure, its target, and whether it is met (a marker only: the bench never fails)")
hdr = ["target"] + [COND[b] for b in BINS] + ["C: prometheus_client"]
print("  " + "".ljust(W0) + hdr[0].ljust(WT) + "".join(h[:WV - 1].ljust(WV) for h in hdr[1:]).rstrip())
summary = []


NO_C = object()	# the row has no in-process (C) figure


def srow(name, target, op, t, fmt, vals, cval=NO_C, notes=None):
    notes = notes or {}
    cells = [cell(vals.get(b), fmt, op, t, notes.get(b, "")) for b in BINS]
    cells.append("" if cval is NO_C else cell(cval, fmt, op, t))
    summary.append((name, op, t, vals))
    print(("  " + name.ljust(W0) + target.ljust(WT) + "".join(c.ljust(WV) for c in cells)).rstrip())


def floor_ratio(key, field):
    """Section 1's F (obs's features at their floor) beside B1's ratio."""
    x = thr[key, "F"][field] if (key, "F") in thr else None
    return {"b1": f" (floor {r3(x)})"} if x is not None else None


srow("uvicorn throughput ratio vs A", ">= 0.93", ">=", 0.93, r3,
     {b: thr["uv", b]["rps_ratio"] for b in BINS}, thr["uv", "C"]["rps_ratio"],
     notes=floor_ratio("uv", "rps_ratio"))
srow("nginx throughput ratio vs A", ">= 0.90", ">=", 0.90, r3, {b: thr["ng", b]["rps_ratio"] for b in BINS},
     notes=floor_ratio("ng", "rps_ratio"))
srow("uvicorn p99 ratio vs A", "<= 1.4", "<=", 1.4, r3,
     {b: thr["uv", b]["p99_ratio"] for b in BINS}, thr["uv", "C"]["p99_ratio"],
     notes=floor_ratio("uv", "p99_ratio"))
srow("nginx p99 ratio vs A", "<= 1.4", "<=", 1.4, r3, {b: thr["ng", b]["p99_ratio"] for b in BINS},
     notes=floor_ratio("ng", "p99_ratio"))


def bpf_note(s):
    """B1's least of section 3b's bursts and obs's features at their floor,
    beside section 3's single run."""
    return f" (3b {fmt_n(floor_min('obsd', s))}, floor {fmt_n(floor_ns(s))})"


srow("uvicorn BPF time per request (ns)", "<= 1500", "<=", 1500, fmt_n,
     {b: bget(b, "uv", "ns_req") for b in BINS}, notes={"b1": bpf_note("uv")})
srow("nginx BPF time per request (ns)", "<= 1800", "<=", 1800, fmt_n,
     {b: bget(b, "ng", "ns_req") for b in BINS}, notes={"b1": bpf_note("ng")})
srow("uvicorn BPF program runs per request", "-", None, None, lambda x: f"{x:.2f}",
     {b: bget(b, "uv", "cnt_req") for b in BINS})
srow("nginx BPF program runs per request", "-", None, None, lambda x: f"{x:.2f}",
     {b: bget(b, "ng", "cnt_req") for b in BINS})
srow("UNIX-socket uvicorn BPF ns per request", "-", None, None, fmt_n,
     {b: bget(b, "ux", "ns_req") for b in BINS},
     notes={b: f" (TCP {fmt_n(bget(b, 'ut', 'ns_req'))})" for b in BINS})
srow("UNIX-socket uvicorn BPF runs per request", "-", None, None, lambda x: f"{x:.2f}",
     {b: bget(b, "ux", "cnt_req") for b in BINS},
     notes={b: f" (TCP {bget(b, 'ut', 'cnt_req') or 0:.2f})" for b in BINS})
srow("UNIX-socket requests observed / served", "-", None, None, lambda x: f"{x:,.0f}",
     {b: bget(b, "ux", "seen") for b in BINS},
     notes={b: f" / {fmt_n(bget(b, 'ux', 'req'))}" for b in BINS})
srow("obsd CPU per request, uvicorn (us)", "<= 1.0", "<=", 1.0, lambda x: f"{x:.2f}",
     {b: med(cpu[b, "uv"]) for b in BINS})
srow("obsd CPU per request, nginx (us)", "<= 1.0", "<=", 1.0, lambda x: f"{x:.2f}",
     {b: med(cpu[b, "ng"]) for b in BINS})
srow("obsd CPU per request, uvicorn, obsd warm (us)", "-", None, None, lambda x: f"{x:.2f}",
     {b: med(cpu[b, "uw"]) for b in BINS})
srow("instructions per request, ab recording", "-", None, None, fmt_n, {b: cg[b]["ipr"] for b in BINS})
srow("instructions per keep-alive request", "<= 6000", "<=", 6000, fmt_n, {b: cg[b]["ipr_ka"] for b in BINS})
dd_notes = "; ".join(x for x in (
    f"floor {fmt_n3(dd_ratio['F'])}" if "F" in DD_EXTRA else "",
    f"no Python on the node {fmt_n3(dd_ratio['L'])}" if "L" in DD_EXTRA else "",
    f"syscall-hooks off {fmt_n3(dd_ratio['H'])}" if "H" in DD_EXTRA else "") if x)
srow("dd (no socket) wall time ratio vs bare", "<= 1.05", "<=", 1.05, r3, {b: dd_ratio[b] for b in BINS},
     notes={"b1": f" ({dd_notes})"} if dd_notes else None)
if IDLE_N == TARGET_CONNS:
    srow(f"obsd RSS, {IDLE_N:,} idle connections (MB)", "<= 64", "<=", 64, lambda x: f"{x:.1f}",
         {b: idle[b]["rss_mb"] for b in BINS})
else:
    srow(f"obsd RSS, {IDLE_N:,} idle connections (MB)", "-", None, None, lambda x: f"{x:.1f}",
         {b: idle[b]["rss_mb"] for b in BINS})
    srow(f"  estimated at {TARGET_CONNS:,} (MB)", "<= 64", "<=", 64, lambda x: f"{x:.1f}",
         {b: idle[b]["est_mb"] for b in BINS})
srow("events lost at max rate, uvicorn", "0", "==", 0, fmt_n, {b: loss[b, "uv"]["lost"] for b in BINS})
srow("events lost at max rate, nginx", "0", "==", 0, fmt_n, {b: loss[b, "ng"]["lost"] for b in BINS})
counts = []
for b in BINS:
    judged = [target_met(vals.get(b), op, t) for _, op, t, vals in summary if op]
    counts.append(f"{sum(1 for j in judged if j)} of {sum(1 for j in judged if j is not None)}")
print(("  " + "targets met".ljust(W0) + "".ljust(WT) + "".join(c.ljust(WV) for c in counts)).rstrip())
print("  (ratios: median of the per-round ratios, run / A of the same round; details below)")
print()

# ---- 1. throughput and latency ----
order = (read("wrk", "order-1") or "").strip()
print(f"1. Throughput and latency  ({params.get('wrk')}, keep-alive, {pairs} interleaved rounds; "
      f"round 1 runs {order.upper() or '?'},")
print("   every other round reversed (ABBA), obsd started fresh for each of its runs)")
print("   A = no obsd; C = the same app in the same uvicorn, wrapped in a prometheus_client ASGI")
print("   middleware (scripts/bench/app_prom.py: Counter + Histogram per request, labels")
print("   method/route/status), no obsd; " + "; ".join(f"{b.upper()} = {LABEL[b]} obsd, unfiltered"
                                                        for b in BINS))
if any(c == "F" for _, c in runs):
    print("   F = obs's features at their floor (section 3b's reader of bytes with socket state, plus")
    print("   the loop and log syscall hooks doing nothing; acting on the server's I/O only): the")
    print("   throughput and p99 no observer with obs's features can beat on this machine")
for key, name in SERVERS:
    cs = [c for c in ["A", "C"] + BINS + ["F"] if (key, c) in runs]
    rows = [
        ["req/s (median)"] + [fmt_n(thr[key, c]["rps"]) for c in cs],
        ["  ratio vs A (median of per-round ratios)"] + [
            "-" if c == "A" else fmt_ratio(thr[key, c]["rps_ratio"]) for c in cs],
        ["  ratio of the medians"] + [
            "-" if c == "A" else fmt_ratio(ratio(thr[key, c]["rps"], thr[key, "A"]["rps"])) for c in cs],
        ["p99 latency (median)"] + [fmt_us(thr[key, c]["p99"]) for c in cs],
        ["  ratio vs A (median of per-round ratios)"] + [
            "-" if c == "A" else fmt_ratio(thr[key, c]["p99_ratio"]) for c in cs],
        ["p50 latency (median)"] + [fmt_us(thr[key, c]["p50"]) for c in cs],
        ["wrk errors (non-2xx, socket), all rounds"] + [str(thr[key, c]["err"]) for c in cs],
    ]
    print(f"  {name}:")
    table(rows, head=[COND[c] for c in cs])
fo = {c: [(read("wrk", f"{c}-{i}.foreign") or "?").strip() for i in ROUNDS] for c in ["A", "C"] + BINS}
print("   other sessions' obs instances loaded during each run (their probes run on every process too):")
print("     " + "   ".join(f"{c.upper()} {' '.join(v)}" for c, v in fo.items()))
print("   every run (req/s, p99):")
for (key, c), rs in runs.items():
    cells = ", ".join(f"{r['rps']:,.0f} {fmt_us(r['p99'])}" if r and r["rps"] else "n/a" for r in rs)
    print(f"     {SNAME[key]:<17} {c.upper():<2}: {cells}")
prom = metrics("prom", "metrics.txt")
if prom:
    counted = msum(prom, "http_requests_total{", 'route="/text"')
    print(f"   the middleware counted {counted:,.0f} GET /text requests (http_requests_total) over the rounds"
          " and the warm-up")
print()

# ---- 2. dd ----
print(f"2. Node-wide tax on a process that uses no socket: `{params.get('dd')}` (wall time),")
print("   bare (in round A) and with each obsd loaded, unfiltered and idle (in its round, after the wrk runs;")
print("   the Python and nginx servers run, so obsd has attached its write() and epoll tracepoints)")
if "F" in DD_EXTRA:
    print("   F = the floor: those syscall tracepoints attached, doing nothing (scripts/bench/floor.bpf.c")
    print("       f_sys_*): while any is attached every syscall of every process takes the tracing path")
if "L" in DD_EXTRA:
    print("   L = the current obsd where it has not attached them, as on a node with no Python process and")
    print("       no HTTP server (in a PID namespace of its own: its start-up scan sees no process)"
          + (f"; attached meanwhile in {dd_l_attached} round(s)" if dd_l_attached else ""))
if "H" in DD_EXTRA:
    print("   H = the current obsd run with --syscall-hooks off, the servers on the node: no syscall")
    print("       tracepoint is loaded (no log lines, no event-loop timing; docs/deploy.md)")
cs = ["A"] + BINS + DD_EXTRA
table([
    ["wall time (median)"] + [f"{med(dd[c]):.3f} s" if med(dd[c]) else "n/a" for c in cs],
    ["  ratio vs bare (median of per-round ratios)"] + ["-"] + [fmt_ratio(dd_ratio[b]) for b in BINS + DD_EXTRA],
    ["obsd CPU during the dd (median)"] + ["-"] + [
        f"{dd_cpu[b] * 1000:.0f} ms" if dd_cpu[b] is not None else "n/a" for b in BINS] + ["-"] * len(DD_EXTRA),
], head=["bare"] + [COND[b] for b in BINS] + [{"F": "floor (F)", "L": "B1, no Python (L)", "H": "B1, hooks off (H)"}[c] for c in DD_EXTRA])
for c in cs:
    print(f"     {c.upper():<2} every run (s): {', '.join(f'{x:.3f}' if x else 'n/a' for x in dd[c])}")
print()

# ---- 3. kernel cost ----
print(f"3. Kernel cost: BPF run time (kernel.bpf_stats_enabled=1; one {params.get('wrk')} run per server")
print("   and obsd binary, obsd unfiltered)")
cols = [(b, key) for key, _ in SERVERS for b in BINS]
head = [f"{'uvicorn' if k == 'uv' else 'nginx'} {b.upper()}" for b, k in cols]


def bcell(b, s, f, fmt):
    v = bget(b, s, f)
    return fmt(v) if v is not None else "n/a"


table([
    ["obs programs (ids seen when obsd loaded)"] + [bcell(b, k, "ids", str) for b, k in cols],
    ["requests served in the run"] + [bcell(b, k, "req", fmt_n) for b, k in cols],
    ["  req/s (bpf_stats on: slightly lower)"] + [bcell(b, k, "rps", fmt_n) for b, k in cols],
    ["BPF run time per request"] + [bcell(b, k, "ns_req", lambda x: f"{x:,.0f} ns") for b, k in cols],
    ["program invocations per request"] + [bcell(b, k, "cnt_req", lambda x: f"{x:.2f}") for b, k in cols],
    ["mean run time per invocation"] + [bcell(b, k, "ns_run", lambda x: f"{x:,.0f} ns") for b, k in cols],
    ["ring records per request (obs_events_total)"] + [bcell(b, k, "rec_req", lambda x: f"{x:.2f}")
                                                      for b, k in cols],
], head=head, w=18)
print("   largest programs (ns per request = runs per request x ns per run):")
for b, key in cols:
    r = bpf.get((b, key))
    if not r or not r["req"]:
        continue
    top = sorted(r["per"].items(), key=lambda kv_: -kv_[1][0])[:6]
    cells = "; ".join(f"{n} {v[0] / r['req']:,.0f} ({v[1] / r['req']:.2f} x {v[0] / max(v[1], 1):,.0f})"
                      for n, v in top)
    print(f"     {SNAME[key].split()[0]} {b.upper()}: {cells}")
print("   (unfiltered, the enter/exit hooks also run for the load generator's and every other")
print("    process's read/write/close syscalls: that is part of the cost and is included)")
print()
print(f"   UNIX-socket uvicorn (--uds) next to TCP uvicorn, both driven by scripts/bench/keepalive_load.py")
print(f"   ({params.get('ux_conns')} keep-alive connections, up to one request in flight on each, "
      f"{params.get('duration')} s; same obsd runs as above)")
for b in BINS:
    print(f"   {COND[b]}:")
    table([
        ["requests served (client)"] + [bcell(b, s, "req", fmt_n) for s in ("ux", "ut", "uv")],
        ["  req/s (bpf_stats on)"] + [bcell(b, s, "rps", fmt_n) for s in ("ux", "ut", "uv")],
        ["requests observed by obsd (that server)"] + [bcell(b, s, "seen", fmt_n) for s in ("ux", "ut", "uv")],
        ["BPF run time per request"] + [bcell(b, s, "ns_req", lambda x: f"{x:,.0f} ns") for s in ("ux", "ut", "uv")],
        ["program invocations per request"] + [bcell(b, s, "cnt_req", lambda x: f"{x:.2f}")
                                               for s in ("ux", "ut", "uv")],
        ["mean run time per invocation"] + [bcell(b, s, "ns_run", lambda x: f"{x:,.0f} ns")
                                            for s in ("ux", "ut", "uv")],
    ], head=["UNIX socket", "TCP, same client", "TCP, wrk (above)"], w=20)
    r = bpf.get((b, "ux"))
    if r and r["req"]:
        top = sorted(r["per"].items(), key=lambda kv_: -kv_[1][0])[:5]
        print("     largest programs, UNIX: " + "; ".join(
            f"{n} {v[0] / r['req']:,.0f} ({v[1] / r['req']:.2f} x {v[0] / max(v[1], 1):,.0f})"
            for n, v in top if v[1]))
print("   (observed: http_requests_total of that uvicorn, named with --service pid:<pid>=bench-unix|tcp)")
print()
print("3b. The kernel's floor: on the same two socket tracepoints, with the same load (wrk -t1 -c16,")
print("    2 s bursts, each kind in turn, three rounds; the least of each, as host noise only adds),")
print("    acting on the server's reads and writes only and returning at once on wrk's, as obsd does")
print("    (scripts/bench/floor.bpf.c; obsd = B1, unfiltered). ns of BPF time per request:")


def obsd_part(s, names):
    """obsd's ns per request in programs of those names, in its least burst."""
    best = least_burst("obsd", s)
    if not best:
        return "n/a"
    return fmt_ns(sum(v for n, v in best["per"].items() if n in names) / best["req"])


def floor_sys(s):
    """The syscall hooks' share of the least "full" burst."""
    best = least_burst("full", s)
    if not best:
        return "n/a"
    return fmt_ns((best["ns"] - best["sock"]) / best["req"])


LOOP_PROGS = ("enter_epoll_wait", "exit_epoll_wait", "enter_epoll_pwait", "exit_epoll_pwait")
table([
    ["hooks that do nothing (the price of the runs)", fmt_ns(floor_min("empty", "uv")),
     fmt_ns(floor_min("empty", "ng"))],
    ["a minimal observer: per read and write, a", fmt_ns(floor_min("min", "uv")),
     fmt_ns(floor_min("min", "ng"))],
    ["  timestamped 256-byte ring record, nothing else", "", ""],
    ["a reader of bytes: the same, with the first 256", fmt_ns(floor_min("copy", "uv")),
     fmt_ns(floor_min("copy", "ng"))],
    ["  bytes moved copied from the syscall's buffer", "", ""],
    ["  or iovec (what any HTTP observer must do)", "", ""],
    ["the reader of bytes keeping per-socket state", fmt_ns(floor_min("state", "uv")),
     fmt_ns(floor_min("state", "ng"))],
    ["  (socket storage, looked up at every operation)", "", ""],
    ["obsd's socket hooks (sock_recv + sock_send):", fmt_ns(floor_min("obsd", "uv", "sock")),
     fmt_ns(floor_min("obsd", "ng", "sock"))],
    ["  socket state, protocol sniffing, bytes copied", "", ""],
    ["obsd, all its programs", fmt_ns(floor_min("obsd", "uv")), fmt_ns(floor_min("obsd", "ng"))],
    ["  of which event-loop hooks (epoll_wait)", obsd_part("uv", LOOP_PROGS), obsd_part("ng", LOOP_PROGS)],
    ["  of which the log (write) and close hooks", obsd_part("uv", ("enter_write", "enter_close")),
     obsd_part("ng", ("enter_write", "enter_close"))],
    ["obs's features at their floor: the reader of", fmt_ns(floor_min("full", "uv")),
     fmt_ns(floor_min("full", "ng"))],
    ["  bytes with socket state, and the loop (epoll_wait)", "", ""],
    ["  and log (write) syscall hooks doing nothing", "", ""],
    ["  of which those syscall hooks", floor_sys("uv"), floor_sys("ng")],
], head=["uvicorn", "nginx"], w=14)
print("   (the reader with socket state is a floor under obs's socket hooks; the loop, log and close")
print("    hooks run on syscalls of every process and pay at least the price of a run each. The summary")
print("    sets obsd, all its programs, against obs's features at their floor)")
print()

# ---- 4. userspace cost ----
print("4. Userspace cost")
CPU_RUNS = [("uv", "uvicorn"), ("ng", "nginx"), ("uw", "uvicorn, warm")]
table([[f"obsd CPU per request, {name} (median)"] + [
    f"{med(cpu[b, k]):.2f} us" if cpu[b, k] else "n/a" for b in BINS] for k, name in CPU_RUNS],
    head=[COND[b] for b in BINS])
for b in BINS:
    for key, name in CPU_RUNS:
        print(f"     {b.upper()} {name:<17} per run (us): {', '.join(f'{x:.2f}' for x in cpu[b, key])}")
print("   (utime+stime from /proc/<obsd>/stat over each wrk run of section 1 / requests wrk completed.")
print("    obsd starts afresh each round: its first run (uvicorn) fills its stores of recent requests")
print("    and events, which later runs reuse. 'warm' is uvicorn again after nginx, the steady state)")
print()
print(f"   callgrind on `obsd --replay` of a recording made by the same binary ({params.get('ab')}")
print("   against uvicorn, and the same count of HTTP/1.1 keep-alive requests over 8 connections,")
print("   scripts/bench/keepalive_load.py; obsd --record --port <uvicorn>); an empty replay is subtracted.")
print("   (uvicorn does not keep HTTP/1.0 connections alive, so ab -k opens a connection per request)")
rows = []
for b in BINS:
    c = cg[b]
    ab = kv("cg", b, "ab.kv")
    kaa = kv("cg", b, "ka.kv")
    s1, ska = c["s1"], c["ska"]
    print(f"   {COND[b]}:")
    print(f"     ab recording: {s1.get('kernel_records', 0):,} kernel records, {c['nreq']:,} requests "
          f"(ok {s1.get('requests_ok', 'n/a')}, failed {s1.get('requests_failed', 'n/a')}), "
          f"{s1.get('connections', 'n/a')} connections, {ab.get('bytes', 'n/a')} bytes; "
          f"ab completed {ab.get('complete', 'n/a')}, {ab.get('keepalive', 'n/a')} kept alive")
    line = f"     instructions: full replay {fmt_n(c['full1'])}"
    if c["full2"] is not None:
        line += (f", again {fmt_n(c['full2'])}" + (" (identical)" if c["full1"] == c["full2"] else
                 f" ({c['full2'] - c['full1']:+,})" if c["full1"] else ""))
    print(line + f"; empty replay (startup + exit) {fmt_n(c['empty'])}")
    if c["ipr"] is not None:
        print(f"     => per request: {c['ipr']:,.0f}   (per kernel record: "
              f"{(c['full1'] - c['empty']) / max(s1.get('kernel_records', 1), 1):,.0f})")
    print(f"     keep-alive recording: {kaa.get('requests', 'n/a')} requests sent, "
          f"{ska.get('kernel_records', 0):,} kernel records, {c['nka']:,} requests, "
          f"{ska.get('connections', 'n/a')} connections; full replay {fmt_n(c['ka'])}")
    if c["ipr_ka"] is not None:
        print(f"     => per keep-alive request: {c['ipr_ka']:,.0f}   (per kernel record: "
              f"{(c['ka'] - c['empty']) / max(ska.get('kernel_records', 1), 1):,.0f})")


def where(b, name, n, top=8):
    """Top obs functions by inclusive instructions per request (callgrind_annotate)."""
    seen = {"main", "pipeline__replay", "on_ring", "conn_table__event"}
    out = []
    for line in (read("cg", b, f"{name}.annot") or "").splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(\S+):(\S+)", line)
        if m and re.search(r"(^|/)user/", m.group(3)) and m.group(4) not in seen:
            seen.add(m.group(4))
            out.append(f"{m.group(4)} {int(m.group(1).replace(',', '')) / n:,.0f} ({m.group(2)}%)")
        if len(out) >= top:
            break
    return out


def self_cost(b, name, n, top=6):
    """Top functions (any object) by their own instructions per request."""
    out = []
    for line in (read("cg", b, f"{name}.self") or "").splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(\S+):(\S+)", line)
        if m and not m.group(4).startswith("0x"):
            out.append(f"{m.group(4)} {int(m.group(1).replace(',', '')) / n:,.0f} ({m.group(2)}%)")
        if len(out) >= top:
            break
    return out


for b in BINS:
    c = cg[b]
    for title, fn, name, n in (("own instructions per request, ab recording (self cost, % of the run)",
                                self_cost, "full1", c["nreq"]),
                               ("where the instructions go, ab recording (inclusive per request)",
                                where, "full1", c["nreq"]),
                               ("where the instructions go, keep-alive recording", where, "ka", c["nka"])):
        w = fn(b, name, n) if n else []
        if w:
            print(f"   {b.upper()} {title}:")
            print("     " + "; ".join(w[:4]))
            if w[4:]:
                print("     " + "; ".join(w[4:]))
print()

# ---- 5. loss and memory ----
print(f"5. Loss at the highest rate wrk reaches here ({params.get('wrk_max')}, fresh obsd per server and")
print("   binary, no filter)")
reasons = sorted({re.search(r'reason="([^"]+)"', n).group(1) for v in loss.values() for n in v["m"]
                  if n.startswith("obs_events_lost_total{")})
lc = [(b, key) for key, _ in SERVERS for b in BINS]
rows = [["req/s reached"] + [fmt_n(loss[c]["wrk"]["rps"]) if loss[c]["wrk"] else "n/a" for c in lc],
        ["requests served (wrk)"] + [fmt_n(loss[c]["wrk"]["requests"]) if loss[c]["wrk"] else "n/a"
                                     for c in lc],
        ["requests reported by obsd (ok+failed)"] + [
            fmt_n(msum(loss[c]["m"], "obs_requests_total{")) if loss[c]["m"] else "n/a" for c in lc],
        ["kernel events delivered"] + [fmt_n(loss[c]["m"].get("obs_events_total")) for c in lc],
        ["events lost, all reasons"] + [fmt_n(loss[c]["lost"]) for c in lc]]
for r in reasons:
    rows.append([f"  {r}"] + [fmt_n(loss[c]["m"].get(f'obs_events_lost_total{{reason="{r}"}}')) for c in lc])
rows.append(["captures truncated"] + [fmt_n(loss[c]["m"].get("obs_capture_truncated_total")) for c in lc])
rows.append(["obs_ringbuf_fill_peak_ratio"] + [
    f"{loss[c]['m']['obs_ringbuf_fill_peak_ratio']:.4f}" if "obs_ringbuf_fill_peak_ratio" in loss[c]["m"]
    else "n/a" for c in lc])
table(rows, head=[f"{'uvicorn' if k == 'uv' else 'nginx'} {b.upper()}" for b, k in lc], w=18)
print("   (obsd unfiltered: its counters also include any other process's HTTP traffic on the machine)")
print()

print(f"   obsd memory with {IDLE_N:,} idle keep-alive connections to uvicorn (one request each, then held")
print("   open; fresh obsd per binary, unfiltered):")
rows = [
    ["client: opened / failed / seconds"] + [
        f"{idle[b]['client'].get('opened', 'n/a')} / {idle[b]['client'].get('failed', 'n/a')} / "
        f"{idle[b]['client'].get('seconds', 'n/a')}" for b in BINS],
    ["VmRSS before"] + [f"{idle[b]['before'].get('VmRSS', 'n/a')} kB" for b in BINS],
    ["VmRSS with the connections open"] + [f"{idle[b]['after'].get('VmRSS', 'n/a')} kB" for b in BINS],
    ["VmHWM (peak RSS) with them open"] + [f"{idle[b]['after'].get('VmHWM', 'n/a')} kB" for b in BINS],
    ["RSS growth per idle connection"] + [
        f"{idle[b]['per_conn']:,.0f} bytes" if idle[b]["per_conn"] is not None else "n/a" for b in BINS],
] + ([] if IDLE_N == TARGET_CONNS else [
    [f"RSS estimated at {TARGET_CONNS:,} connections"] + [
        f"{idle[b]['est_mb']:.1f} MB" if idle[b]["est_mb"] is not None else "n/a" for b in BINS]]) + [
    ["obs_connections_tracked before / open"] + [
        f"{fmt_n(idle[b]['m0'].get('obs_connections_tracked'))} / {fmt_n(idle[b]['mo'].get('obs_connections_tracked'))}"
        for b in BINS],
    ["  after the client closed them"] + [fmt_n(idle[b]["mc"].get("obs_connections_tracked")) for b in BINS],
]
table(rows, head=[COND[b] for b in BINS], w=30)
print()

# ---- anchors ----
print("Published anchors (other systems, other machines and loads; for orientation only):")
print("  DeepFlow  eBPF hook cost 277-889 ns per hook; nginx throughput -30% with eBPF only;")
print("            -4.5% ... -7% on application demos")
print("  Beyla     about 500 ns of eBPF time per request")
print("  Coroot    about 20 us of agent CPU per request")
print("Compare: section 3 'mean run time per invocation' with DeepFlow's per hook, 'BPF run time per")
print("request' with Beyla's, and section 4 'obsd CPU per request' with Coroot's.")
print("=" * 110)
