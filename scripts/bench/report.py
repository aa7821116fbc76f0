"""Turn the raw outputs collected by scripts/bench.sh into the benchmark report.

Usage: report.py RESULTS_DIR
RESULTS_DIR layout (written by bench.sh):
  machine.txt                 key=value lines (nproc, kernel, cpu, clk_tck, ...)
  params.txt                  key=value lines (pairs, duration, wrk args, ...)
  wrk/{uv,ng}-{A,B}-<i>.txt   wrk --latency outputs of the interleaved pairs
  wrk/{A,B}-<i>.foreign       other sessions' obs instances loaded at that pair
  cpu/{uv,ng}-B-<i>.txt       obsd utime+stime ticks before and after run B<i>
  wrk/{uv,ng}-stats.txt       wrk output of the bpf_stats run
  bpf/ids                     obs's program ids; bpf/{uv,ng}-{before,after}.json
  loss/{uv,ng}-{wrk,metrics}.txt
  cg/{full1,full2,empty,ka}.{out,json}  callgrind outputs and replay summaries
  cg/{full1,ka}.{annot,self}  callgrind_annotate, inclusive and self
  cg/ab.{txt,kv}, cg/ka.kv    the loads that made the two recordings
  idle/{before,after}.status, idle/metrics-{before,open,closed}.txt, idle/client
Prints figures only: the machine is shared, nothing here is a pass/fail.
"""
import json
import os
import re
import statistics
import sys

D = sys.argv[1]
SERVERS = [("uv", "uvicorn /text"), ("ng", "nginx /small.txt")]


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


def table(rows, head=None, w0=44, w=24):
    if head:
        print("  " + "".ljust(w0) + "".join(h.ljust(w) for h in head))
    for row in rows:
        print("  " + row[0].ljust(w0) + "".join(str(c).ljust(w) for c in row[1:]))


machine = kv("machine.txt")
params = kv("params.txt")
pairs = int(params.get("pairs", "0"))
tick = float(machine.get("clk_tck", "100"))

print("=" * 96)
print("obs benchmark  --  figures, not verdicts: this machine is shared and noisy "
      "(other sessions run tests concurrently)")
print("=" * 96)
print(f"Machine: {machine.get('nproc')} CPUs ({machine.get('cpu')}), kernel {machine.get('kernel')}, "
      f"{machine.get('mem')} RAM")
print(f"Load average at start: {machine.get('load_start')}   at end: {machine.get('load_end')}")
print(f"Versions: {machine.get('versions')}")
print(f"Date: {machine.get('date')}   total bench time: {machine.get('elapsed')} s")
print()

# ---- 1. throughput and latency ----
print(f"1. Throughput and latency overhead  ({params.get('wrk')}, keep-alive, "
      f"{pairs} interleaved pairs A B A B ...)")
print("   A = obsd stopped; B = obsd running with no filter (the default: every process observed)")
res = {}
for key, _ in SERVERS:
    res[key] = {c: [wrk("wrk", f"{key}-{c}-{i}.txt") for i in range(1, pairs + 1)] for c in "AB"}
rows = []
summ = {}
for key, _ in SERVERS:
    s = {}
    for c in "AB":
        runs = [r for r in res[key][c] if r]
        s[c + "rps"] = med([r["rps"] for r in runs])
        s[c + "p99"] = med([r["p99"] for r in runs])
        s[c + "p50"] = med([r["p50"] for r in runs])
        s[c + "err"] = sum(r["errors"] for r in runs)
    pr = [ratio(b["rps"], a["rps"]) for a, b in zip(res[key]["A"], res[key]["B"]) if a and b]
    s["pair_ratio"] = med(pr)
    s["pair_ratios"] = pr
    summ[key] = s
cols = [k for k, _ in SERVERS]
table([
    ["req/s without obsd (median)"] + [fmt_n(summ[k]["Arps"]) for k in cols],
    ["req/s with obsd (median)"] + [fmt_n(summ[k]["Brps"]) for k in cols],
    ["  ratio with / without"] + [fmt_ratio(ratio(summ[k]["Brps"], summ[k]["Arps"])) for k in cols],
    ["  median of per-pair ratios"] + [fmt_ratio(summ[k]["pair_ratio"]) for k in cols],
    ["p99 latency without obsd (median)"] + [fmt_us(summ[k]["Ap99"]) for k in cols],
    ["p99 latency with obsd (median)"] + [fmt_us(summ[k]["Bp99"]) for k in cols],
    ["  ratio with / without"] + [fmt_ratio(ratio(summ[k]["Bp99"], summ[k]["Ap99"])) for k in cols],
    ["p50 latency without / with (medians)"] + [f"{fmt_us(summ[k]['Ap50'])} / {fmt_us(summ[k]['Bp50'])}"
                                               for k in cols],
    ["wrk errors (non-2xx, socket) A / B"] + [f"{summ[k]['Aerr']} / {summ[k]['Berr']}" for k in cols],
], head=[n for _, n in SERVERS])
fa = [(read("wrk", f"A-{i}.foreign") or "?").strip() for i in range(1, pairs + 1)]
fb = [(read("wrk", f"B-{i}.foreign") or "?").strip() for i in range(1, pairs + 1)]
print(f"   other sessions' obs instances loaded during each pair (their probes run on every "
      f"process too): A {' '.join(fa)}  B {' '.join(fb)}")
print("   every run (req/s, p99):")
for key, name in SERVERS:
    for c in "AB":
        cells = ", ".join(f"{r['rps']:,.0f} {fmt_us(r['p99'])}" if r else "n/a" for r in res[key][c])
        print(f"     {name:<17} {c}: {cells}")
print()

# ---- 2. kernel cost ----
print(f"2. Kernel cost: BPF run time (kernel.bpf_stats_enabled=1 during one {params.get('wrk')} run "
      "per server, obsd unfiltered)")
ids = set((read("bpf", "ids") or "").split())
bpf = {}
for key, _ in SERVERS:
    try:
        before = {str(p["id"]): p for p in json.loads(read("bpf", f"{key}-before.json"))}
        after = {str(p["id"]): p for p in json.loads(read("bpf", f"{key}-after.json"))}
    except (TypeError, ValueError):
        bpf[key] = None
        continue
    per = {}
    for i in ids:
        if i not in after:
            continue
        a, b = after[i], before.get(i, {})
        ns = a.get("run_time_ns", 0) - b.get("run_time_ns", 0)
        cnt = a.get("run_cnt", 0) - b.get("run_cnt", 0)
        per[a.get("name", i)] = per.get(a.get("name", i), (0, 0))
        per[a.get("name", i)] = (per[a.get("name", i)][0] + ns, per[a.get("name", i)][1] + cnt)
    w = wrk("wrk", f"{key}-stats.txt")
    bpf[key] = {"per": per, "ns": sum(v[0] for v in per.values()),
                "cnt": sum(v[1] for v in per.values()), "req": w["requests"] if w else None,
                "rps": w["rps"] if w else None}
rows = [["obs programs (ids seen when obsd loaded)"] + [str(len(ids))] * len(cols)]
rows.append(["requests served in the run"] + [fmt_n(bpf[k]["req"]) if bpf[k] else "n/a" for k in cols])
rows.append(["  req/s (bpf_stats on: slightly lower)"] + [fmt_n(bpf[k]["rps"]) if bpf[k] else "n/a"
                                                         for k in cols])
rows.append(["BPF run time per request"] + [
    f"{bpf[k]['ns'] / bpf[k]['req']:,.0f} ns" if bpf[k] and bpf[k]["req"] else "n/a" for k in cols])
rows.append(["program invocations per request"] + [
    f"{bpf[k]['cnt'] / bpf[k]['req']:.2f}" if bpf[k] and bpf[k]["req"] else "n/a" for k in cols])
rows.append(["mean run time per invocation (per hook)"] + [
    f"{bpf[k]['ns'] / bpf[k]['cnt']:,.0f} ns" if bpf[k] and bpf[k]["cnt"] else "n/a" for k in cols])
table(rows, head=[n for _, n in SERVERS])
print("   largest programs (ns per request = runs per request x ns per run):")
for key, name in SERVERS:
    b = bpf[key]
    if not b or not b["req"]:
        continue
    top = sorted(b["per"].items(), key=lambda kv_: -kv_[1][0])[:6]
    cells = "; ".join(f"{n} {v[0] / b['req']:,.0f} ({v[1] / b['req']:.2f} x {v[0] / max(v[1], 1):,.0f})"
                      for n, v in top)
    print(f"     {name:<17} {cells}")
print("   (unfiltered, the enter/exit hooks also run for the load generator's and every other")
print("    process's read/write/close syscalls: that is part of the cost and is included)")
print()

# ---- 3. userspace cost ----
print("3. Userspace cost")
cpu = {}
for key, _ in SERVERS:
    xs = []
    for i in range(1, pairs + 1):
        t = (read("cpu", f"{key}-B-{i}.txt") or "").split()
        w = res[key]["B"][i - 1]
        if len(t) == 2 and w and w["requests"]:
            xs.append((float(t[1]) - float(t[0])) / tick / w["requests"] * 1e6)
    cpu[key] = xs
table([
    ["obsd CPU per request (median of B runs)"] + [f"{med(cpu[k]):.2f} us" if cpu[k] else "n/a"
                                                  for k in cols],
], head=[n for _, n in SERVERS])
for key, name in SERVERS:
    print(f"     {name:<17} per B run (us): {', '.join(f'{x:.2f}' for x in cpu[key])}")
print("   (utime+stime from /proc/<obsd>/stat over each B run / requests wrk completed)")
cg = {}
for name in ("full1", "full2", "empty", "ka"):
    text = read("cg", f"{name}.out") or ""
    m = re.search(r"^(?:totals|summary):\s+(\d+)", text, re.M)
    try:
        summary = json.loads(read("cg", f"{name}.json") or "")
    except ValueError:
        summary = {}
    cg[name] = (int(m.group(1)) if m else None, summary)
full1, s1 = cg["full1"]
full2, s2 = cg["full2"]
empty, _ = cg["empty"]
nreq = (s1.get("requests_ok", 0) + s1.get("requests_failed", 0)) if s1 else 0
nrec = s1.get("kernel_records", 0) if s1 else 0
ab = kv("cg", "ab.kv")
print(f"   callgrind on `obsd --replay` of a recording ({params.get('ab')} against uvicorn, "
      "obsd --record --port <uvicorn>):")
print(f"     recording: {nrec:,} kernel records, {nreq:,} requests "
      f"(ok {s1.get('requests_ok', 'n/a')}, failed {s1.get('requests_failed', 'n/a')}), "
      f"{s1.get('connections', 'n/a')} connections, {ab.get('bytes', 'n/a')} bytes; "
      f"ab completed {ab.get('complete', 'n/a')}, {ab.get('keepalive', 'n/a')} of them kept alive")
print("     (uvicorn does not keep HTTP/1.0 connections alive, so ab -k opens a connection per request)")
print(f"     instructions, full replay run 1: {fmt_n(full1)}")
print(f"     instructions, full replay run 2: {fmt_n(full2)}"
      + ("   (identical)" if full1 is not None and full1 == full2 else
         f"   (differs from run 1 by {full2 - full1:+,}, {(full2 - full1) / full1 * 100:+.5f}%)"
         if full1 and full2 else ""))
print(f"     instructions, empty replay (header only, startup + exit): {fmt_n(empty)}")
if full1 and empty is not None and nreq:
    print(f"     => instructions per request: {(full1 - empty) / nreq:,.0f}"
          f"   (per kernel record: {(full1 - empty) / max(nrec, 1):,.0f})")
ka, ska = cg["ka"]
kaa = kv("cg", "ka.kv")
nka = (ska.get("requests_ok", 0) + ska.get("requests_failed", 0)) if ska else 0
print(f"   same, keep-alive: {kaa.get('requests', 'n/a')} HTTP/1.1 requests over 8 connections "
      f"(scripts/bench/keepalive_load.py), {ska.get('kernel_records', 0):,} kernel records, "
      f"{nka:,} requests, {ska.get('connections', 'n/a')} connections:")
print(f"     instructions, full replay: {fmt_n(ka)}")
if ka and empty is not None and nka:
    print(f"     => instructions per keep-alive request: {(ka - empty) / nka:,.0f}"
          f"   (per kernel record: {(ka - empty) / max(ska.get('kernel_records', 1), 1):,.0f})")



def where(name, n, top=8):
    """Top obs functions by inclusive instructions per request (callgrind_annotate)."""
    seen = {"main", "pipeline__replay", "on_ring", "conn_table__event"}
    out = []
    for line in (read("cg", f"{name}.annot") or "").splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(\S+):(\S+)", line)
        if m and re.search(r"(^|/)user/", m.group(3)) and m.group(4) not in seen:
            seen.add(m.group(4))
            out.append(f"{m.group(4)} {int(m.group(1).replace(',', '')) / n:,.0f} ({m.group(2)}%)")
        if len(out) >= top:
            break
    return out


def self_cost(name, n, top=6):
    """Top functions (any object) by their own instructions per request."""
    out = []
    for line in (read("cg", f"{name}.self") or "").splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(\S+):(\S+)", line)
        if m and not m.group(4).startswith("0x"):
            fn = m.group(4)
            out.append(f"{fn} {int(m.group(1).replace(',', '')) / n:,.0f} ({m.group(2)}%)")
        if len(out) >= top:
            break
    return out


if nreq:
    w = self_cost("full1", nreq)
    if w:
        print("   own instructions per request, ab recording (self cost, % of the whole run):")
        print("     " + "; ".join(w[:3]))
        print("     " + "; ".join(w[3:]))
    w = where("full1", nreq)
    if w:
        print("   where the instructions go, ab recording (inclusive per request, % of the whole run):")
        print("     " + "; ".join(w[:4]))
        print("     " + "; ".join(w[4:]))
if nka:
    w = where("ka", nka)
    if w:
        print("   where the instructions go, keep-alive recording:")
        print("     " + "; ".join(w[:4]))
        print("     " + "; ".join(w[4:]))
print()

# ---- 4. loss and memory ----
print(f"4. Loss at the highest rate wrk reaches here ({params.get('wrk_max')}, fresh obsd per server, "
      "no filter)")
loss = {k: (wrk("loss", f"{k}-wrk.txt"), metrics("loss", f"{k}-metrics.txt")) for k in cols}
reasons = sorted({re.search(r'reason="([^"]+)"', n).group(1) for k in cols for n in loss[k][1]
                  if n.startswith("obs_events_lost_total{")})
rows = [["req/s reached"] + [fmt_n(loss[k][0]["rps"]) if loss[k][0] else "n/a" for k in cols],
        ["requests served (wrk)"] + [fmt_n(loss[k][0]["requests"]) if loss[k][0] else "n/a"
                                     for k in cols],
        ["requests reported by obsd (ok+failed)"] + [
            fmt_n(loss[k][1].get('obs_requests_total{outcome="ok"}', 0)
                  + loss[k][1].get('obs_requests_total{outcome="failed"}', 0)) for k in cols],
        ["kernel events delivered"] + [fmt_n(loss[k][1].get("obs_events_total")) for k in cols]]
for r in reasons:
    rows.append([f"events lost: {r}"] + [fmt_n(loss[k][1].get(f'obs_events_lost_total{{reason="{r}"}}'))
                                         for k in cols])
rows.append(["captures truncated"] + [fmt_n(loss[k][1].get("obs_capture_truncated_total")) for k in cols])
rows.append(["obs_ringbuf_fill_peak_ratio"] + [
    f"{loss[k][1]['obs_ringbuf_fill_peak_ratio']:.4f}" if "obs_ringbuf_fill_peak_ratio" in loss[k][1]
    else "n/a" for k in cols])
table(rows, head=[n for _, n in SERVERS])
print("   (obsd unfiltered: its counters also include any other process's HTTP traffic on the machine)")
print()

idle = kv("idle", "client")
nb, na = status("idle", "before.status"), status("idle", "after.status")
mo, mc = metrics("idle", "metrics-open.txt"), metrics("idle", "metrics-closed.txt")
opened = int(idle.get("opened", "0") or 0)
print(f"   obsd memory with {params.get('idle_n')} idle keep-alive connections to uvicorn "
      "(one request each, then held open; obsd unfiltered):")
print(f"     client: opened {idle.get('opened', 'n/a')}, failed {idle.get('failed', 'n/a')}, "
      f"in {idle.get('seconds', 'n/a')} s")
table([
    ["VmHWM (peak RSS)"] + [f"{nb.get('VmHWM', 'n/a')} kB", f"{na.get('VmHWM', 'n/a')} kB"],
    ["VmRSS"] + [f"{nb.get('VmRSS', 'n/a')} kB", f"{na.get('VmRSS', 'n/a')} kB"],
    ["obs_connections_tracked"] + [fmt_n(metrics("idle", "metrics-before.txt").get("obs_connections_tracked")),
                                   fmt_n(mo.get("obs_connections_tracked"))],
], head=["before", "connections open"], w0=44)
if opened and na.get("VmRSS") and nb.get("VmRSS"):
    print(f"     => RSS growth per idle connection: {(na['VmRSS'] - nb['VmRSS']) * 1024 / opened:,.0f} bytes")
print(f"     after the client closed them: obs_connections_tracked {fmt_n(mc.get('obs_connections_tracked'))}")
print()

# ---- anchors ----
print("Published anchors (other systems, other machines and loads; for orientation only):")
print("  DeepFlow  eBPF hook cost 277-889 ns per hook; nginx throughput -30% with eBPF only;")
print("            -4.5% ... -7% on application demos")
print("  Beyla     about 500 ns of eBPF time per request")
print("  Coroot    about 20 us of agent CPU per request")
print("Compare: obs section 2 'mean run time per invocation' with DeepFlow's per hook, 'BPF run")
print("time per request' with Beyla's, and section 3 'obsd CPU per request' with Coroot's.")
print("=" * 96)
