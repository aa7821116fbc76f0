#!/usr/bin/env bash
# Quick look at obs's cost: BPF run time per request (kernel.bpf_stats_enabled)
# and obsd CPU time per request, under `ab -k` against uvicorn (httptools +
# uvloop, 1 worker). Prints figures; asserts nothing (the machine is shared).
# Usage: scripts/cost.sh [requests]   (as root, after `make`)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
PORT=18931; API=18932
tmp=$(mktemp -d)
cleanup() { kill $srv $obsd 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
cp tests/e2e/app.py "$tmp/"
(cd "$tmp" && exec /usr/bin/python3 -m uvicorn --http httptools --loop uvloop --port $PORT \
	--log-level warning app:app) & srv=$!
before=$(bpftool prog show -j | /usr/bin/python3 -c 'import json,sys; print(" ".join(str(p["id"]) for p in json.load(sys.stdin)))')
build/obsd --listen 127.0.0.1:$API --port $PORT 2>"$tmp/obsd.log" & obsd=$!
for _ in $(seq 100); do curl -sf -o /dev/null localhost:$API/ready && \
	curl -sf -o /dev/null localhost:$PORT/text && break; sleep 0.1; done
old_stats=$(sysctl -n kernel.bpf_stats_enabled); sysctl -qw kernel.bpf_stats_enabled=1
# obs's programs: those that appeared when this obsd loaded.
mine=$(bpftool prog show -j | /usr/bin/python3 -c 'import json,sys; b=set(sys.argv[1].split()); print(" ".join(str(p["id"]) for p in json.load(sys.stdin) if str(p["id"]) not in b))' "$before")
prog_ns() { bpftool prog show -j | /usr/bin/python3 -c '
import json,sys; ids=set(sys.argv[1].split()); t=c=0
for p in json.load(sys.stdin):
    if str(p["id"]) in ids:
        t+=p.get("run_time_ns",0); c+=p.get("run_cnt",0)
print(t,c)' "$mine"; }
cpu() { awk '{print $14+$15}' /proc/$obsd/stat; }
read t0 c0 < <(prog_ns); u0=$(cpu)
ab -q -k -n "$N" -c 8 "http://127.0.0.1:$PORT/text" > "$tmp/ab.txt"
sleep 1
read t1 c1 < <(prog_ns); u1=$(cpu)
sysctl -qw kernel.bpf_stats_enabled="$old_stats"
done_n=$(awk '/Complete requests/{print $3}' "$tmp/ab.txt")
rps=$(awk '/Requests per second/{print $4}' "$tmp/ab.txt")
tick=$(getconf CLK_TCK)
reported=$(curl -s "localhost:$API/health" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["requests_total"])')
echo "requests served (ab):        $done_n at $rps req/s"
echo "requests reported (obsd):    $((reported - 1))   (minus the warm-up request)"
echo "BPF run time per request:    $(( (t1 - t0) / done_n )) ns   ($(( (c1 - c0) / done_n )) program runs per request)"
echo "obsd CPU per request:        $(/usr/bin/python3 -c "print(round(($u1-$u0)/$tick/$done_n*1e6, 2))") us"
