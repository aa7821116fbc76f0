#!/usr/bin/env bash
# obs benchmark (`make bench`): what observing costs, printed side by side for
# uvicorn (httptools + uvloop, 1 worker, tests/e2e/app.py /text) and nginx
# (1 worker, a small static file, own prefix and port), for two obsd binaries:
# a baseline revision (BENCH_BASELINE, built in a temporary git worktree) and
# the current build/obsd.
#   1. throughput / latency: interleaved rounds of A (no obsd), C (the same app
#      wrapped in an in-process prometheus_client middleware, no obsd), B0
#      (baseline obsd), B1 (current obsd), F (obs's features at their floor,
#      section 3b's "full"); wrk
#   2. node-wide tax on a process that uses no socket: dd bs=64 timed bare,
#      with each obsd loaded and idle, with the syscall tracepoints doing
#      nothing (the floor), with the current obsd before it has attached
#      them (a node with no Python process) and with the current obsd run
#      with --syscall-hooks off, in the same rounds
#   3. kernel cost: BPF run time and program runs per request (bpf_stats),
#      TCP uvicorn, nginx and a UNIX-socket uvicorn
#   3b. the kernel's floor: obsd's socket hooks next to a minimal observer (a
#      timestamped ring record per server read/write), a reader of bytes (the
#      same with the bytes copied), that reader keeping per-socket state, obs's
#      features at their floor (the latter plus the loop and log syscall hooks
#      doing nothing) and hooks that do nothing, on the same tracepoints
#      (scripts/bench/floor.bpf.c)
#   4. userspace cost: obsd CPU per request; instructions per request from
#      callgrind on `obsd --replay` of a recording made by the same binary
#   5. events lost at the highest rate; obsd memory with many idle connections
# Each figure is printed with its target and whether it is met. Prints
# figures, asserts nothing: the machine is shared and noisy.
# Knobs (environment): BENCH_PAIRS (6), BENCH_DURATION (5 s per wrk run),
# BENCH_IDLE_CONNS (10000), BENCH_AB_REQUESTS (20000), BENCH_BASELINE (a git
# revision, default de2ecf5; "none": current obsd only), BENCH_DD_COUNT
# (2000000). Needs root, `make`, git.
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
BASELINE=${BENCH_BASELINE:-de2ecf5}
DD_COUNT=${BENCH_DD_COUNT:-2000000}
UX_CONNS=16	# keep-alive connections of the UNIX/TCP Python load client
WRK_ARGS=(-t1 -c16 -d"${DUR}s" --latency)
WRK_MAX_ARGS=(-t2 -c64 -d"${DUR}s" --latency)

say() { printf 'bench: [%3d s] %s\n' "$SECONDS" "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (BPF, sysctl)"
[ -x "$OBSD" ] || die "build/obsd missing: run make"
[ -x "$ROOT/build/bench-floor" ] && [ -f "$ROOT/build/floor.bpf.o" ] || die "build/bench-floor missing: run make bench"
for t in wrk ab valgrind callgrind_annotate setarch bpftool nginx curl sysctl dd git make unshare; do
	command -v "$t" >/dev/null || die "$t missing: run make deps"
done
$PY -c 'import prometheus_client' 2>/dev/null || die "python3-prometheus-client missing: run make deps"

start_s=$(date +%s)
tmp=$(mktemp -d /tmp/obs-bench.XXXXXX)
chmod 755 "$tmp"
R=$tmp/results
mkdir -p "$R"/{wrk,cpu,dd,bpf,cg,loss,idle,prom}
pids=()		# every process this script started and has not stopped yet
obsd=
stats_old=
base_wt=	# the baseline's temporary git worktree while it exists

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
drop_worktree() {
	if [ -n "$base_wt" ]; then
		git -C "$ROOT" worktree remove --force "$base_wt" 2>/dev/null || true
		# Only if that left it registered (its directory already gone).
		if git -C "$ROOT" worktree list --porcelain 2>/dev/null | grep -qxF "worktree $base_wt"; then
			git -C "$ROOT" worktree prune 2>/dev/null || true
		fi
	fi
	base_wt=
}
cleanup() {
	set +e
	if [ -n "$stats_old" ]; then sysctl -qw kernel.bpf_stats_enabled="$stats_old"; fi
	local p
	for p in "${pids[@]}"; do stop_pid "$p"; done
	drop_worktree
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the binaries: b0 = baseline (optional), b1 = current ----
# Private copies: the same binaries for every section, even if build/ is
# rebuilt meanwhile.
BINS=()
cp "$OBSD" "$tmp/obsd-b1"
# The current binary's revision; "+changes" if obsd's sources differ from it.
cur_rev=$(git -C "$ROOT" rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD -- user bpf include proto vmlinux Makefile 2>/dev/null || cur_rev+=+changes
base_rev=none
base_label=
if [ "$BASELINE" != none ]; then
	base_rev=$(git -C "$ROOT" rev-parse --verify --quiet "$BASELINE^{commit}") ||
		die "BENCH_BASELINE=$BASELINE is not a commit here (or 'none' to skip the baseline)"
	base_rev=${base_rev:0:7}
	[ "$BASELINE" = "$base_rev" ] || base_label="$BASELINE=$base_rev"
	say "building the baseline obsd ($BASELINE = $base_rev) in a temporary worktree"
	base_wt=$tmp/baseline-wt
	git -C "$ROOT" worktree add --detach --quiet "$base_wt" "$base_rev" >"$tmp/baseline-build.log" 2>&1 ||
		die "git worktree add failed: $(tail -3 "$tmp/baseline-build.log")"
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$base_wt" -j"$(nproc)" build/obsd \
		>>"$tmp/baseline-build.log" 2>&1 ||
		die "baseline build failed (BENCH_BASELINE=none skips it): $(tail -5 "$tmp/baseline-build.log")"
	cp "$base_wt/build/obsd" "$tmp/obsd-b0"
	drop_worktree
	BINS+=(b0)
fi
BINS+=(b1)
base_label=${base_label:-$base_rev}
label() { if [ "$1" = b0 ]; then echo "baseline $base_label"; else echo "current $cur_rev"; fi; }

wait_http() {	# URL [tries of 0.1 s] [curl args]
	local i
	for i in $(seq "${2:-300}"); do
		curl -sf -o /dev/null --max-time 2 "${@:3}" "$1" && return 0
		sleep 0.1
	done
	return 1
}

# Raise the descriptor limit for uvicorn and the idle-connection client.
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"

read -r UV NG API UV2 PROM < <($PY -c '
import socket
ss = [socket.socket() for _ in range(5)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
UV_URL=http://127.0.0.1:$UV/text
NG_URL=http://127.0.0.1:$NG/small.txt
PROM_URL=http://127.0.0.1:$PROM/text
UX_SOCK=$tmp/app.sock

# ---- the machine ----
{
	echo "nproc=$(nproc)"
	echo "kernel=$(uname -r)"
	echo "cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
	echo "mem=$(free -h | awk '/^Mem:/{print $2}')"
	echo "clk_tck=$(getconf CLK_TCK)"
	echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
	echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "versions=$($PY -c 'import uvicorn; print("uvicorn", uvicorn.__version__)'), $(nginx -v 2>&1 | sed 's/.*version: //'), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $(valgrind --version), prometheus_client $(dpkg-query -W -f='${Version}' python3-prometheus-client 2>/dev/null || echo '?')"
} >"$R/machine.txt"
{
	echo "pairs=$PAIRS"
	echo "duration=$DUR"
	echo "wrk=wrk ${WRK_ARGS[*]}"
	echo "wrk_max=wrk ${WRK_MAX_ARGS[*]}"
	echo "ab=ab -k -n $AB_N -c 8"
	echo "idle_n=$IDLE_N"
	echo "dd=dd if=/dev/zero of=/dev/null bs=64 count=$DD_COUNT"
	echo "ux_conns=$UX_CONNS"
	echo "bins=${BINS[*]}"
	echo "baseline=$BASELINE"
	echo "label_b0=baseline $base_label"
	echo "label_b1=current $cur_rev"
	# Same obsd sources in both: their differences are this machine's noise.
	if [ "$base_rev" != none ] &&
		git -C "$ROOT" diff --quiet "$base_rev" -- user bpf include proto vmlinux Makefile 2>/dev/null; then
		echo "same_sources=1"
	fi
} >"$R/params.txt"

# ---- servers ----
start_uvicorn() {	# CHECK_URL APP [uvicorn args] (cwd tests/e2e); sets last_pid
	local check=$1 app=$2 curl_args=()
	shift 2
	case " $* " in *" --uds "*) curl_args=(--unix-socket "$UX_SOCK") ;; esac
	(cd tests/e2e && PYTHONDONTWRITEBYTECODE=1 exec $PY -m uvicorn --http httptools --loop uvloop \
		--workers 1 --log-level warning "$@" "$app") >>"$tmp/uvicorn.log" 2>&1 &
	last_pid=$!
	pids+=("$last_pid")
	wait_http "$check" 300 "${curl_args[@]}" || die "uvicorn did not start: $(tail -5 "$tmp/uvicorn.log")"
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

say "starting uvicorn on :$UV, uvicorn + prometheus_client middleware on :$PROM, nginx on :$NG"
start_uvicorn "$UV_URL" app:app --host 127.0.0.1 --port "$UV"
uv1=$last_pid
start_uvicorn "$PROM_URL" app_prom:app --host 127.0.0.1 --port "$PROM" --app-dir "$ROOT/scripts/bench"
uvp=$last_pid
nginx -p "$ng" -e "$ng/error.log" -c "$ng/nginx.conf" >>"$tmp/nginx.log" 2>&1 &
nginx_pid=$!
pids+=("$nginx_pid")
wait_http "$NG_URL" || die "nginx did not start: $(tail -5 "$ng/error.log" "$tmp/nginx.log")"

# ---- obsd ----
prog_ids() { bpftool prog show -j | $PY -c 'import json,sys; print(" ".join(str(p["id"]) for p in json.load(sys.stdin)))'; }
start_obsd() {	# BIN [obsd args]; sets obsd and obs_ids (the programs this obsd loaded)
	local bin=$1 before
	shift
	before=$(prog_ids)
	"$tmp/obsd-$bin" --listen "127.0.0.1:$API" "$@" >>"$tmp/obsd-$bin.log" 2>&1 &
	obsd=$!
	pids+=("$obsd")
	wait_http "http://127.0.0.1:$API/ready" 600 || die "obsd ($bin) not ready: $(tail -5 "$tmp/obsd-$bin.log")"
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
n = sum(1 for p in json.load(sys.stdin) if p.get("name") in ("exit_writev", "sock_recv"))
print(max(n - int(sys.argv[1]), 0))' "$([ -n "$obsd" ] && echo 1 || echo 0)"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$obsd/stat"; }
api() { curl -sf --max-time 5 "http://127.0.0.1:$API$1" || true; }
time_dd() {	# OUT: wall microseconds of the dd
	local s e
	s=$(date +%s%N)
	dd if=/dev/zero of=/dev/null bs=64 count="$DD_COUNT" 2>/dev/null
	e=$(date +%s%N)
	echo $(( (e - s) / 1000 )) >"$1"
}

# "full" (3b, and F in section 1): the reader with socket state plus the syscall
# hooks obsd has attached here (a Python loop is on the node), doing nothing:
# obs's features at their floor
FLOOR_SYS=f_sys_write,f_sys_epoll_enter,f_sys_epoll_exit,f_sys_epoll_penter,f_sys_epoll_pexit
ng_worker=$(pgrep -P "$nginx_pid" | head -1)

say "warm-up"
wrk -t1 -c16 -d2s "$UV_URL" >/dev/null
wrk -t1 -c16 -d2s "$PROM_URL" >/dev/null
wrk -t1 -c16 -d2s "$NG_URL" >/dev/null

# ---- 1 + 2. interleaved rounds: A, C, B0, B1 (ABBA: every other round reversed) ----
run_A() {	# ROUND: no obsd, no in-process metrics; then dd bare
	say "round $1/$PAIRS: A (no obsd)"
	foreign_obs >"$R/wrk/A-$1.foreign"
	wrk "${WRK_ARGS[@]}" "$UV_URL" >"$R/wrk/uv-A-$1.txt" 2>&1 || true
	wrk "${WRK_ARGS[@]}" "$NG_URL" >"$R/wrk/ng-A-$1.txt" 2>&1 || true
	time_dd "$R/dd/A-$1.txt"
}
run_C() {	# ROUND: the prometheus_client middleware app, no obsd
	say "round $1/$PAIRS: C (in-process prometheus_client, no obsd)"
	foreign_obs >"$R/wrk/C-$1.foreign"
	wrk "${WRK_ARGS[@]}" "$PROM_URL" >"$R/wrk/uv-C-$1.txt" 2>&1 || true
}
run_B() {	# BIN ROUND: that obsd, unfiltered; then dd with it loaded and idle
	local b=$1 i=$2 s url c0
	say "round $i/$PAIRS: ${b^^} ($(label "$b") obsd)"
	start_obsd "$b"
	foreign_obs >"$R/wrk/$b-$i.foreign"
	# uw: uvicorn again, obsd warm (its request and event stores filled by
	# the first run), the steady state of a long-running obsd
	for s in uv ng uw; do
		url=$UV_URL; [ $s = ng ] && url=$NG_URL
		c0=$(cpu_ticks)
		wrk "${WRK_ARGS[@]}" "$url" >"$R/wrk/$s-$b-$i.txt" 2>&1 || true
		sleep 0.2	# let obsd drain the ring (it polls every 50 ms)
		echo "$c0 $(cpu_ticks)" >"$R/cpu/$s-$b-$i.txt"
	done
	c0=$(cpu_ticks)
	time_dd "$R/dd/$b-$i.txt"
	echo "$c0 $(cpu_ticks)" >"$R/cpu/dd-$b-$i.txt"
	stop_obsd
}
# F: dd with the syscall tracepoints obsd uses (write, epoll_wait, epoll_pwait)
# attached and doing nothing, the floor of any observer that takes log lines
# and loop timing from them. L: dd with the current obsd loaded where it has
# not attached them, as on a node with no Python process and no HTTP server:
# run in a PID namespace of its own, its start-up scan sees no process, and it
# is asked nothing over HTTP (it would take its own API connection for a
# server's). Both without wrk, interleaved with A.
# F also runs wrk against each server with obs's features at their floor
# loaded (as in section 3b, acting on that server): the throughput and p99 no
# observer with those features can beat.
floor_up() {	# PROGS PID OUT: start bench-floor (its log: OUT with .log), wait until
		# attached; sets fl to its pid
	local log=${3%.*}.log
	"$ROOT/build/bench-floor" "$ROOT/build/floor.bpf.o" "$1" "$2" >"$3" 2>"$log" &
	fl=$!
	pids+=("$fl")
	for _ in $(seq 100); do grep -q attached "$log" && break; sleep 0.1; done
	grep -q attached "$log" || die "bench-floor did not attach: $(cat "$log")"
}
run_F() {	# ROUND
	local fl s url target
	say "round $1/$PAIRS: F (obs's features at their floor: uvicorn, nginx; then dd, syscall tracepoints doing nothing)"
	for s in uv ng; do
		url=$UV_URL target=$uv1
		[ "$s" = ng ] && url=$NG_URL && target=$ng_worker
		floor_up "f_recv_state,f_send_state,$FLOOR_SYS" "$target" "$R/wrk/$s-F-$1.floor"
		wrk "${WRK_ARGS[@]}" "$url" >"$R/wrk/$s-F-$1.txt" 2>&1 || true
		stop_pid "$fl"
	done
	floor_up "$FLOOR_SYS" 1 "$R/dd/F-$1.floor"
	time_dd "$R/dd/F-$1.txt"
	stop_pid "$fl"
}
run_L() {	# ROUND
	local u c log=$R/dd/L-$1.log
	say "round $1/$PAIRS: L (dd, current obsd with no Python process or HTTP server seen)"
	unshare --pid --fork --mount-proc --kill-child=SIGTERM "$tmp/obsd-b1" \
		--listen "127.0.0.1:$API" >"$log" 2>&1 &
	u=$!
	pids+=("$u")
	for _ in $(seq 600); do grep -q "obsd: attached" "$log" && break; sleep 0.1; done
	grep -q "obsd: attached" "$log" || die "obsd (L) did not attach: $(tail -5 "$log")"
	time_dd "$R/dd/L-$1.txt"
	c=$(pgrep -P "$u" || true)	# obsd: stopped first, its port free again
	[ -n "$c" ] && kill -TERM "$c" 2>/dev/null
	for _ in $(seq 100); do [ -n "$c" ] && kill -0 "$c" 2>/dev/null || break; sleep 0.1; done
	stop_pid "$u"
	# attached meanwhile (a Python start elsewhere on the node): the report says so
	grep -c "tracepoints attached" "$log" >"$R/dd/L-$1.attached" || true
}
# H: dd with the current obsd run with --syscall-hooks off, the servers on
# the node (it attaches no syscall tracepoint, whatever runs).
run_H() {	# ROUND
	say "round $1/$PAIRS: H (dd, current obsd with --syscall-hooks off)"
	start_obsd b1 --syscall-hooks off
	time_dd "$R/dd/H-$1.txt"
	stop_obsd
}
order=(A C "${BINS[@]}" F)
[[ " ${BINS[*]} " == *" b1 "* ]] && order+=(L H)
for i in $(seq "$PAIRS"); do
	seq_=("${order[@]}")
	if [ $((i % 2)) -eq 0 ]; then
		seq_=()
		for ((k = ${#order[@]} - 1; k >= 0; k--)); do seq_+=("${order[k]}"); done
	fi
	echo "${seq_[*]}" >"$R/wrk/order-$i"
	for c in "${seq_[@]}"; do
		case $c in
		A) run_A "$i" ;;
		C) run_C "$i" ;;
		F) run_F "$i" ;;
		L) run_L "$i" ;;
		H) run_H "$i" ;;
		*) run_B "$c" "$i" ;;
		esac
	done
done
# The in-process series, as a Prometheus server would scrape them.
curl -sf --max-time 5 "http://127.0.0.1:$PROM/metrics" >"$R/prom/metrics.txt" || true
stop_pid "$uvp"

# ---- 3. kernel cost: bpf_stats, TCP uvicorn, nginx, UNIX-socket uvicorn ----
say "starting uvicorn on UNIX socket $UX_SOCK"
start_uvicorn http://localhost/text app:app --uds "$UX_SOCK"
uvx=$last_pid
stats_old=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled=1
for b in "${BINS[@]}"; do
	say "BPF run time (kernel.bpf_stats_enabled=1), $(label "$b") obsd"
	d=$R/bpf/$b
	mkdir -p "$d"
	# Name the two uvicorns so that their requests can be told apart from any
	# other HTTP traffic on the machine (naming filters nothing).
	svc=()
	# (the help text read whole first: with pipefail, grep -q leaving early
	# could fail the pipeline on obsd's SIGPIPE)
	if grep -q -- --service <<<"$("$tmp/obsd-$b" --help 2>&1 || true)"; then
		svc=(--service "pid:$uv1=bench-tcp" --service "pid:$uvx=bench-unix")
	fi
	start_obsd "$b" "${svc[@]}"
	echo "$obs_ids" >"$d/ids"
	for s in uv ng ux ut; do
		api /metrics >"$d/$s-metrics-before.txt"
		bpftool prog show -j >"$d/$s-before.json"
		case $s in
		uv) wrk "${WRK_ARGS[@]}" "$UV_URL" >"$d/$s-wrk.txt" 2>&1 || true ;;
		ng) wrk "${WRK_ARGS[@]}" "$NG_URL" >"$d/$s-wrk.txt" 2>&1 || true ;;
		ux) $PY scripts/bench/keepalive_load.py "unix:$UX_SOCK" 0 /text 0 "$UX_CONNS" --duration "$DUR" \
			>"$d/$s-load.kv" 2>&1 || true ;;
		ut) $PY scripts/bench/keepalive_load.py 127.0.0.1 "$UV" /text 0 "$UX_CONNS" --duration "$DUR" \
			>"$d/$s-load.kv" 2>&1 || true ;;
		esac
		sleep 0.2
		bpftool prog show -j >"$d/$s-after.json"
		sleep 0.3	# obsd: the last events of the run into /metrics
		api /metrics >"$d/$s-metrics-after.txt"
	done
	stop_obsd
done
# ---- 3b. the kernel's floor: obsd's socket hooks next to a minimal observer
# (a timestamped ring record per read and write of the server, nothing else),
# a reader of bytes (the same record with the bytes moved copied in), that
# reader keeping per-socket state (socket storage), the latter with obsd's
# syscall hooks doing nothing (obs's features at their floor), and hooks
# that do nothing, on the same tracepoints; short bursts,
# interleaved, the least of each taken (host noise only ever adds) ----
mkdir -p "$R/floor"
FLOOR_BURSTS=3
floor_burst() {	# KIND SERVER ROUND: one 2 s wrk burst with that KIND loaded
	local kind=$1 s=$2 k=$3 url=$UV_URL target=$uv1 d=$R/floor/$1-$2-$3 fl
	[ "$s" = ng ] && url=$NG_URL && target=$ng_worker
	mkdir -p "$d"
	if [ "$kind" = obsd ]; then
		start_obsd b1
		echo "$obs_ids" >"$d/ids"
		bpftool prog show -j >"$d/before.json"
		wrk -t1 -c16 -d2s "$url" >"$d/wrk.txt" 2>&1 || true
		bpftool prog show -j >"$d/after.json"
		stop_obsd
		return
	fi
	progs=f_recv_$kind,f_send_$kind
	[ "$kind" = full ] && progs=f_recv_state,f_send_state,$FLOOR_SYS
	floor_up "$progs" "$target" "$d/floor.txt"
	wrk -t1 -c16 -d2s "$url" >"$d/wrk.txt" 2>&1 || true
	stop_pid "$fl"
}
for k in $(seq "$FLOOR_BURSTS"); do
	for s in uv ng; do
		say "the kernel's floor, round $k/$FLOOR_BURSTS, $s: hooks that do nothing, a minimal observer, a reader of bytes, with socket state, obs's features at their floor, obsd"
		for kind in empty min copy state full obsd; do floor_burst "$kind" "$s" "$k"; done
	done
done
sysctl -qw kernel.bpf_stats_enabled="$stats_old"
stats_old=
stop_pid "$uvx"

# ---- 5a. loss at the highest rate ----
for b in "${BINS[@]}"; do
	mkdir -p "$R/loss/$b"
	for s in uv ng; do
		say "loss at max rate: $s, $(label "$b") obsd"
		url=$UV_URL; [ $s = ng ] && url=$NG_URL
		start_obsd "$b"
		wrk "${WRK_MAX_ARGS[@]}" "$url" >"$R/loss/$b/$s-wrk.txt" 2>&1 || true
		sleep 0.5
		api /metrics >"$R/loss/$b/$s-metrics.txt"
		stop_obsd
	done
done

# ---- 4a. recordings for the replay, each binary its own (the record layout
# may differ between revisions) ----
for b in "${BINS[@]}"; do
	d=$R/cg/$b
	mkdir -p "$d"
	say "recording ab -k -n $AB_N against uvicorn, $(label "$b") obsd"
	start_obsd "$b" --record "$d/rec.obsrec" --port "$UV"
	ab -q -k -n "$AB_N" -c 8 "$UV_URL" >"$d/ab.txt" 2>&1 || true
	sleep 0.5
	stop_obsd
	{
		echo "complete=$(awk '/^Complete requests/{print $3}' "$d/ab.txt")"
		echo "keepalive=$(awk '/^Keep-Alive requests/{print $3}' "$d/ab.txt")"
		echo "bytes=$(stat -c %s "$d/rec.obsrec")"
	} >"$d/ab.kv"
	# uvicorn does not keep HTTP/1.0 connections alive, so ab -k opens one per
	# request: also record the same count of HTTP/1.1 keep-alive requests.
	say "recording $AB_N keep-alive HTTP/1.1 requests over 8 connections, $(label "$b") obsd"
	start_obsd "$b" --record "$d/ka.obsrec" --port "$UV"
	$PY scripts/bench/keepalive_load.py 127.0.0.1 "$UV" /text "$AB_N" 8 >"$d/ka.kv" 2>&1 || true
	sleep 0.5
	stop_obsd
	echo "bytes=$(stat -c %s "$d/ka.obsrec")" >>"$d/ka.kv"
done

# ---- 5b. memory with many idle keep-alive connections ----
stop_pid "$uv1"	# the servers of the earlier sections are not needed any more
stop_pid "$nginx_pid"
start_uvicorn "http://127.0.0.1:$UV2/text" app:app --host 127.0.0.1 --port "$UV2" \
	--timeout-keep-alive 600 --backlog 4096
uv2=$last_pid
for b in "${BINS[@]}"; do
	say "obsd memory with $IDLE_N idle keep-alive connections, $(label "$b") obsd"
	d=$R/idle/$b
	mkdir -p "$d"
	start_obsd "$b"
	sleep 1
	grep '^Vm' "/proc/$obsd/status" >"$d/before.status"
	api /metrics >"$d/metrics-before.txt"
	$PY scripts/bench/idle_conns.py 127.0.0.1 "$UV2" /text "$IDLE_N" "$d/client" --hold 300 \
		>>"$tmp/idle.log" 2>&1 &
	client=$!
	pids+=("$client")
	for _ in $(seq 1800); do [ -f "$d/client" ] && break; kill -0 "$client" 2>/dev/null || break; sleep 0.1; done
	sleep 1.5	# obsd: drain the last events
	grep '^Vm' "/proc/$obsd/status" >"$d/after.status"
	api /metrics >"$d/metrics-open.txt"
	stop_pid "$client"
	sleep 1.5
	api /metrics >"$d/metrics-closed.txt"
	stop_obsd
done
stop_pid "$uv2"

# ---- 4b. callgrind on the replays (no kernel, no network: deterministic) ----
say "callgrind: obsd --replay of each binary's recordings (ab, keep-alive, empty; current's ab twice)"
# setarch -R: no address randomisation, which otherwise moves a handful of
# instructions between runs.
cg() {	# BIN NAME RECORDING: valgrind in the background, its pid appended to pids
	setarch "$(uname -m)" -R valgrind --tool=callgrind --callgrind-out-file="$R/cg/$1/$2.out" \
		"$tmp/obsd-$1" --replay "$3" >"$R/cg/$1/$2.json" 2>"$R/cg/$1/$2.log" &
	pids+=("$!")
}
for b in "${BINS[@]}"; do
	cg "$b" full1 "$R/cg/$b/rec.obsrec"
	if [ "$b" = b1 ]; then cg "$b" full2 "$R/cg/$b/rec.obsrec"; fi
	# an empty recording: the magic of this binary's own format only
	head -c 8 "$R/cg/$b/rec.obsrec" >"$R/cg/$b/empty.obsrec"
	cg "$b" empty "$R/cg/$b/empty.obsrec"
	cg "$b" ka "$R/cg/$b/ka.obsrec"
done
for p in "${pids[@]}"; do wait "$p" || say "a callgrind run failed (see its log)"; forget "$p"; done
for b in "${BINS[@]}"; do
	for n in full1 ka; do
		callgrind_annotate --inclusive=yes --threshold=100 "$R/cg/$b/$n.out" >"$R/cg/$b/$n.annot" 2>/dev/null || true
		callgrind_annotate --threshold=100 "$R/cg/$b/$n.out" >"$R/cg/$b/$n.self" 2>/dev/null || true
	done
done

say "done"
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$R/machine.txt"
echo "elapsed=$(( $(date +%s) - start_s ))" >>"$R/machine.txt"
# Keep the raw outputs (not the recordings) for a second look: build/bench-raw/.
rm -rf build/bench-raw
mkdir -p build/bench-raw
(cd "$R" && find . -type f ! -name '*.obsrec' -exec cp --parents {} "$ROOT/build/bench-raw/" \;)
$PY scripts/bench/report.py "$R" | tee build/bench.txt
