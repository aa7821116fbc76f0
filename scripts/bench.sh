#!/usr/bin/env bash
# obs benchmark (`make bench`): what observing costs, printed side by side for
# uvicorn (httptools + uvloop, 1 worker, tests/e2e/app.py /text) and nginx
# (1 worker, a small static file, own prefix and port):
#   1. throughput / latency with and without obsd (wrk, interleaved A B pairs)
#   2. kernel cost: BPF run time and program runs per request (bpf_stats)
#   3. userspace cost: obsd CPU per request; instructions per request from
#      callgrind on `obsd --replay` of a recording (deterministic)
#   4. events lost at the highest rate; obsd memory with many idle connections
# Prints figures, asserts nothing: the machine is shared and noisy.
# Knobs (environment): BENCH_PAIRS (6), BENCH_DURATION (5 s per wrk run),
# BENCH_IDLE_CONNS (10000), BENCH_AB_REQUESTS (20000). Needs root, `make`.
# The report also goes to build/bench.txt, raw outputs to build/bench-raw/.
# See docs/bench.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=/usr/bin/python3
OBSD=$ROOT/build/obsd
PAIRS=${BENCH_PAIRS:-6}
DUR=${BENCH_DURATION:-5}
IDLE_N=${BENCH_IDLE_CONNS:-10000}
AB_N=${BENCH_AB_REQUESTS:-20000}
WRK_ARGS=(-t1 -c16 -d"${DUR}s" --latency)
WRK_MAX_ARGS=(-t2 -c64 -d"${DUR}s" --latency)

say() { printf 'bench: [%3d s] %s\n' "$SECONDS" "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (BPF, sysctl)"
[ -x "$OBSD" ] || die "build/obsd missing: run make"
for t in wrk ab valgrind callgrind_annotate setarch bpftool nginx curl sysctl; do
	command -v "$t" >/dev/null || die "$t missing: run make deps"
done

start_s=$(date +%s)
tmp=$(mktemp -d /tmp/obs-bench.XXXXXX)
chmod 755 "$tmp"
R=$tmp/results
mkdir -p "$R"/{wrk,cpu,bpf,cg,loss,idle}
# A private copy: the same binary for every section, even if build/ is rebuilt
# meanwhile.
cp "$OBSD" "$tmp/obsd"
OBSD=$tmp/obsd
pids=()		# every process this script started and has not stopped yet
obsd=
stats_old=

forget() {
	local p keep=()
	for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	pids=("${keep[@]}")
}
stop_pid() {	# TERM, then KILL after 10 s
	local p=$1
	kill -TERM "$p" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	forget "$p"
}
cleanup() {
	set +e
	if [ -n "$stats_old" ]; then sysctl -qw kernel.bpf_stats_enabled="$stats_old"; fi
	local p
	for p in "${pids[@]}"; do stop_pid "$p"; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() {	# URL [tries of 0.1 s]
	local i
	for i in $(seq "${2:-300}"); do
		curl -sf -o /dev/null --max-time 2 "$1" && return 0
		sleep 0.1
	done
	return 1
}

# Raise the descriptor limit for uvicorn and the idle-connection client.
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"

read -r UV NG API UV2 < <($PY -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
UV_URL=http://127.0.0.1:$UV/text
NG_URL=http://127.0.0.1:$NG/small.txt

# ---- the machine ----
{
	echo "nproc=$(nproc)"
	echo "kernel=$(uname -r)"
	echo "cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
	echo "mem=$(free -h | awk '/^Mem:/{print $2}')"
	echo "clk_tck=$(getconf CLK_TCK)"
	echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
	echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "versions=$($PY -c 'import uvicorn; print("uvicorn", uvicorn.__version__)'), $(nginx -v 2>&1 | sed 's/.*version: //'), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $(valgrind --version)"
} >"$R/machine.txt"
{
	echo "pairs=$PAIRS"
	echo "duration=$DUR"
	echo "wrk=wrk ${WRK_ARGS[*]}"
	echo "wrk_max=wrk ${WRK_MAX_ARGS[*]}"
	echo "ab=ab -k -n $AB_N -c 8"
	echo "idle_n=$IDLE_N"
} >"$R/params.txt"

# ---- servers ----
start_uvicorn() {	# PORT [uvicorn args]; sets last_pid
	(cd tests/e2e && PYTHONDONTWRITEBYTECODE=1 exec $PY -m uvicorn --http httptools --loop uvloop \
		--host 127.0.0.1 --port "$1" --workers 1 --log-level warning "${@:2}" app:app) \
		>>"$tmp/uvicorn.log" 2>&1 &
	last_pid=$!
	pids+=("$last_pid")
	wait_http "http://127.0.0.1:$1/text" || die "uvicorn did not start: $(tail -5 "$tmp/uvicorn.log")"
}

ng=$tmp/nginx
mkdir -p "$ng/www" "$ng/tmp"
printf 'hello from obs e2e\n' >"$ng/www/small.txt"
cat >"$ng/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
user root;
pid $ng/nginx.pid;
error_log $ng/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	default_type text/plain;
	sendfile on;
	tcp_nopush on;
	keepalive_timeout 600s;
	keepalive_requests 1000000;
	client_body_temp_path $ng/tmp/body;
	proxy_temp_path $ng/tmp/proxy;
	fastcgi_temp_path $ng/tmp/fastcgi;
	uwsgi_temp_path $ng/tmp/uwsgi;
	scgi_temp_path $ng/tmp/scgi;
	server {
		listen 127.0.0.1:$NG;
		root $ng/www;
	}
}
EOF

say "starting uvicorn on :$UV and nginx on :$NG"
start_uvicorn "$UV"
uv1=$last_pid
nginx -p "$ng" -e "$ng/error.log" -c "$ng/nginx.conf" >>"$tmp/nginx.log" 2>&1 &
nginx_pid=$!
pids+=("$nginx_pid")
wait_http "$NG_URL" || die "nginx did not start: $(tail -5 "$ng/error.log" "$tmp/nginx.log")"

# ---- obsd ----
prog_ids() { bpftool prog show -j | $PY -c 'import json,sys; print(" ".join(str(p["id"]) for p in json.load(sys.stdin)))'; }
start_obsd() {	# [obsd args]; sets obsd and obs_ids (the programs this obsd loaded)
	local before
	before=$(prog_ids)
	"$OBSD" --listen "127.0.0.1:$API" "$@" >>"$tmp/obsd.log" 2>&1 &
	obsd=$!
	pids+=("$obsd")
	wait_http "http://127.0.0.1:$API/ready" 600 || die "obsd not ready: $(tail -5 "$tmp/obsd.log")"
	# New ids since just before the load that this obsd also holds open (another
	# session may load its own obsd at the same moment).
	obs_ids=$($PY -c '
import os, sys
before = set(sys.argv[2].split())
held = set()
fd = f"/proc/{sys.argv[1]}/fdinfo"
for n in os.listdir(fd):
    try:
        for line in open(os.path.join(fd, n)):
            if line.startswith("prog_id:"):
                held.add(line.split()[1])
    except OSError:
        pass
new = [i for i in sys.argv[3].split() if i not in before]
print(" ".join(i for i in new if i in held or not held))' "$obsd" "$before" "$(prog_ids)")
}
stop_obsd() { if [ -n "$obsd" ]; then stop_pid "$obsd"; fi; obsd=; }
# obs instances other than ours (other sessions' obsd/obsctl): their probes
# also run on this benchmark's syscalls, A runs included.
foreign_obs() {
	bpftool prog show -j | $PY -c '
import json, sys
n = sum(1 for p in json.load(sys.stdin) if p.get("name") == "exit_writev")
print(max(n - int(sys.argv[1]), 0))' "$([ -n "$obsd" ] && echo 1 || echo 0)"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$obsd/stat"; }
api() { curl -sf --max-time 5 "http://127.0.0.1:$API$1" || true; }

say "warm-up"
wrk -t1 -c16 -d2s "$UV_URL" >/dev/null
wrk -t1 -c16 -d2s "$NG_URL" >/dev/null

# ---- 1. interleaved pairs: A (no obsd), B (obsd, no filter) ----
for i in $(seq "$PAIRS"); do
	say "pair $i/$PAIRS: A (no obsd)"
	foreign_obs >"$R/wrk/A-$i.foreign"
	wrk "${WRK_ARGS[@]}" "$UV_URL" >"$R/wrk/uv-A-$i.txt" 2>&1 || true
	wrk "${WRK_ARGS[@]}" "$NG_URL" >"$R/wrk/ng-A-$i.txt" 2>&1 || true
	say "pair $i/$PAIRS: B (obsd)"
	start_obsd
	foreign_obs >"$R/wrk/B-$i.foreign"
	for s in uv ng; do
		url=$UV_URL; [ $s = ng ] && url=$NG_URL
		c0=$(cpu_ticks)
		wrk "${WRK_ARGS[@]}" "$url" >"$R/wrk/$s-B-$i.txt" 2>&1 || true
		sleep 0.2	# let obsd drain the ring (it polls every 50 ms)
		echo "$c0 $(cpu_ticks)" >"$R/cpu/$s-B-$i.txt"
	done
	stop_obsd
done

# ---- 2. kernel cost: bpf_stats over one run per server ----
say "BPF run time (kernel.bpf_stats_enabled=1)"
start_obsd
echo "$obs_ids" >"$R/bpf/ids"
stats_old=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled=1
for s in uv ng; do
	url=$UV_URL; [ $s = ng ] && url=$NG_URL
	bpftool prog show -j >"$R/bpf/$s-before.json"
	wrk "${WRK_ARGS[@]}" "$url" >"$R/wrk/$s-stats.txt" 2>&1 || true
	sleep 0.2
	bpftool prog show -j >"$R/bpf/$s-after.json"
done
sysctl -qw kernel.bpf_stats_enabled="$stats_old"
stats_old=
stop_obsd

# ---- 4a. loss at the highest rate ----
for s in uv ng; do
	say "loss at max rate: $s"
	url=$UV_URL; [ $s = ng ] && url=$NG_URL
	start_obsd
	wrk "${WRK_MAX_ARGS[@]}" "$url" >"$R/loss/$s-wrk.txt" 2>&1 || true
	sleep 0.5
	api /metrics >"$R/loss/$s-metrics.txt"
	stop_obsd
done

# ---- 3a. a recording for the replay ----
say "recording ab -k -n $AB_N against uvicorn"
start_obsd --record "$R/cg/rec.obsrec" --port "$UV"
ab -q -k -n "$AB_N" -c 8 "$UV_URL" >"$R/cg/ab.txt" 2>&1 || true
sleep 0.5
stop_obsd
{
	echo "complete=$(awk '/^Complete requests/{print $3}' "$R/cg/ab.txt")"
	echo "keepalive=$(awk '/^Keep-Alive requests/{print $3}' "$R/cg/ab.txt")"
	echo "bytes=$(stat -c %s "$R/cg/rec.obsrec")"
} >"$R/cg/ab.kv"
# uvicorn does not keep HTTP/1.0 connections alive, so ab -k opens one per
# request: also record the same count of HTTP/1.1 keep-alive requests.
say "recording $AB_N keep-alive HTTP/1.1 requests over 8 connections against uvicorn"
start_obsd --record "$R/cg/ka.obsrec" --port "$UV"
$PY scripts/bench/keepalive_load.py 127.0.0.1 "$UV" /text "$AB_N" 8 >"$R/cg/ka.kv" 2>&1 || true
sleep 0.5
stop_obsd
echo "bytes=$(stat -c %s "$R/cg/ka.obsrec")" >>"$R/cg/ka.kv"

# ---- 4b. memory with many idle keep-alive connections ----
say "obsd memory with $IDLE_N idle keep-alive connections"
stop_pid "$uv1"	# the servers of the earlier sections are not needed any more
stop_pid "$nginx_pid"
start_uvicorn "$UV2" --timeout-keep-alive 600 --backlog 4096
uv2=$last_pid
start_obsd
sleep 1
grep '^Vm' "/proc/$obsd/status" >"$R/idle/before.status"
api /metrics >"$R/idle/metrics-before.txt"
$PY scripts/bench/idle_conns.py 127.0.0.1 "$UV2" /text "$IDLE_N" "$R/idle/client" --hold 300 \
	>>"$tmp/idle.log" 2>&1 &
client=$!
pids+=("$client")
for _ in $(seq 1800); do [ -f "$R/idle/client" ] && break; kill -0 "$client" 2>/dev/null || break; sleep 0.1; done
sleep 1.5	# obsd: drain the last events
grep '^Vm' "/proc/$obsd/status" >"$R/idle/after.status"
api /metrics >"$R/idle/metrics-open.txt"
stop_pid "$client"
sleep 1.5
api /metrics >"$R/idle/metrics-closed.txt"
stop_obsd
stop_pid "$uv2"

# ---- 3b. callgrind on the replay (no kernel, no network: deterministic) ----
say "callgrind: obsd --replay of the ab recording (twice), of the keep-alive one, of an empty one"
printf 'OBSREC1\n' >"$R/cg/empty.obsrec"
# setarch -R: no address randomisation, which otherwise moves a handful of
# instructions between runs.
cg() {	# NAME RECORDING: valgrind in the background, its pid appended to pids
	setarch "$(uname -m)" -R valgrind --tool=callgrind --callgrind-out-file="$R/cg/$1.out" \
		"$OBSD" --replay "$2" >"$R/cg/$1.json" 2>"$R/cg/$1.log" &
	pids+=("$!")
}
cg full1 "$R/cg/rec.obsrec"
cg full2 "$R/cg/rec.obsrec"
cg empty "$R/cg/empty.obsrec"
cg ka "$R/cg/ka.obsrec"
for p in "${pids[@]}"; do wait "$p" || say "a callgrind run failed (see its log)"; forget "$p"; done
for n in full1 ka; do
	callgrind_annotate --inclusive=yes --threshold=100 "$R/cg/$n.out" >"$R/cg/$n.annot" 2>/dev/null || true
	callgrind_annotate --threshold=100 "$R/cg/$n.out" >"$R/cg/$n.self" 2>/dev/null || true
done

say "done"
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$R/machine.txt"
echo "elapsed=$(( $(date +%s) - start_s ))" >>"$R/machine.txt"
# Keep the raw outputs (not the recordings) for a second look: build/bench-raw/.
rm -rf build/bench-raw
mkdir -p build/bench-raw
(cd "$R" && find . -type f ! -name '*.obsrec' -exec cp --parents {} "$ROOT/build/bench-raw/" \;)
$PY scripts/bench/report.py "$R" | tee build/bench.txt
