#!/usr/bin/env bash
# bench.sh: `make bench` (issues 5 and 15).  The same metadata storms
# against imdsd, against nginx serving the same answers as static files, and
# against the null responder (one fixed 200 for every request: the cost
# floor), in one run, taking turns, and a table of each against null and
# imdsd against nginx per workload.  docs/performance.md explains the method
# and records results.
#
# For every N of --vms:
#   1. a lab of N VM namespaces (scripts/lab.sh up ... --static-neigh) and
#      their descriptions (scripts/gen-vms.py N --bench: limits far above
#      what a storm asks, so the server is measured, not the budgets);
#   2. imdsd serves them; a checked keep-alive crawl of every VM saves each
#      answer (imds-storm --save) as the static tree nginx will serve;
#   3. R repetitions; in each, imdsd, nginx and null take turns (repetition
#      r starts with the r-th of them, round the circle) listening on
#      169.254.169.254:80 in the lab's host namespace, one stopped before the
#      next starts, and each runs every workload: conn (a storm, one
#      connection per request), keepalive (a storm on persistent
#      connections), steady (M keep-alive clients for D seconds).  Every
#      server's answers are checked for their status only, the crawl
#      walking the listings imdsd gave (imds-storm --status-only), so the
#      client does the same work for all three; then imdsd takes a conn and
#      a keep-alive storm with every answer checked (not in the ratios);
#   4. optionally a perf profile of imdsd under the conn and steady loads,
#      and of the null responder under the conn load.
# Then the flood check of issue 4 (scripts/bench-flood.sh), and the table.
#
# usage: scripts/bench.sh [--vms N[,N...]] [--reps R] [--duration S] [--conns M]
#                         [--storm-repeat K] [--workers W] [--out DIR] [--no-perf] [--no-flood] [--keep]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${IMDS_BUILD:-$ROOT/build}
LAB_SH=$ROOT/scripts/lab.sh
PYTHON=/usr/bin/python3
COMMAND="$0 $*"

VMS_LIST=50,200,1000
REPS=3
DURATION=5
CONNS=0 # 0: min(N, 200)
STORM_REPEAT=0 # 0: min(5, max(1, 1000 / N)): a storm of 50 VMs lasts ~0.1 s
WORKERS=2
OUT=
PERF=1
FLOOD=1
KEEP=0
WORKLOADS="conn keepalive steady"

usage() {
	sed -n '/^# usage:/,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case "$1" in
	--vms) VMS_LIST=$2; shift 2 ;;
	--reps) REPS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--conns) CONNS=$2; shift 2 ;;
	--storm-repeat) STORM_REPEAT=$2; shift 2 ;;
	--workers) WORKERS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--no-perf) PERF=0; shift ;;
	--no-flood) FLOOD=0; shift ;;
	--keep) KEEP=1; shift ;;
	-h|--help) usage ;;
	*) echo "bench.sh: unknown argument '$1'" >&2; usage ;;
	esac
done
[[ "$VMS_LIST" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "bench.sh: --vms: '$VMS_LIST' is not N[,N...]" >&2; exit 2; }
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: --reps: '$REPS' is not a positive number" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench.sh: needs root (namespaces, XDP)" >&2; exit 1; }
for f in imdsd imds-loadmap imds-storm bench/null_responder; do
	[ -x "$BUILD/$f" ] || { echo "bench.sh: $BUILD/$f missing: run make first" >&2; exit 1; }
done
command -v nginx >/dev/null || { echo "bench.sh: nginx not installed (apt-get install nginx-light)" >&2; exit 1; }

# Names of our own: a prefix other labs (the test suite) never use.
export IMDS_LAB_PREFIX=${IMDS_LAB_PREFIX:-imdsb}
SFX=b$$
[ -n "$OUT" ] || OUT=${TMPDIR:-/tmp}/imds-bench-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
eval "$("$LAB_SH" info "$SFX")"
NGINX_PID=
NULL_PID=
SERVERS="imdsd nginx null"

log() { echo "bench: $*" >&2; }

cleanup() {
	set +e
	nginx_stop
	null_stop
	"$LAB_SH" down "$SFX"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the servers --------------------------------------------------------

imdsd_start() {
	"$LAB_SH" start-imdsd "$SFX" --workers "$WORKERS" >/dev/null
	SERVER_PIDS=$(cat "$LAB_RUN_DIR/imdsd.pid")
}

imdsd_stop() {
	"$LAB_SH" stop-imdsd "$SFX" >/dev/null || { log "imdsd did not exit cleanly; its log:"; cat "$LAB_RUN_DIR/imdsd.log" >&2; return 1; }
}

listeners() { # the sockets listening on the metadata address
	nsenter --net="/run/netns/$LAB_HOST_NS" ss -Hltn 'sport = :80' | grep -c 169.254.169.254 || true
}

# Waits up to 5 s for a server we started to listen with every worker.
wait_listening() { # PID NAME LOG
	local i
	for ((i = 0; i < 100; i++)); do
		[ "$(listeners)" -lt "$WORKERS" ] || return 0
		kill -0 "$1" 2>/dev/null || break
		sleep 0.05
	done
	log "$2 did not start; its log:"
	cat "$3" >&2
	return 1
}

# nginx and the null responder take imdsd's place: the same address on the
# same bridge, in the same namespace, so the VMs' packets take the same path
# (minus imdsd's TC programs, which imdsd detaches when it stops).
nginx_start() { # DIR
	local dir=$1 i
	nsenter --net="/run/netns/$LAB_HOST_NS" ip addr replace 169.254.169.254/32 dev "$LAB_BRIDGE"
	nsenter --net="/run/netns/$LAB_HOST_NS" nginx -p "$dir/nginx/" -c "$dir/nginx/nginx.conf" -e "$dir/nginx/error.log" \
		-g 'daemon off;' </dev/null >>"$dir/nginx/stdout.log" 2>&1 &
	NGINX_PID=$!
	wait_listening "$NGINX_PID" nginx "$dir/nginx/error.log" || return 1
	for ((i = 0; i < 100; i++)); do # its workers, for their CPU
		SERVER_PIDS=$(ps -o pid= --ppid "$NGINX_PID" | tr -d ' ' | paste -sd, -)
		[ "$(echo "$SERVER_PIDS" | tr ',' '\n' | grep -c .)" -lt "$WORKERS" ] || {
			SERVER_PIDS="$NGINX_PID,$SERVER_PIDS"
			return 0
		}
		sleep 0.05
	done
	log "nginx did not start $WORKERS workers"
	return 1
}

# Stops nginx or the null responder (by the PID we started) and takes the
# metadata address off the bridge again, as imdsd does when it stops.
stop_server_pid() { # PID
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	nsenter --net="/run/netns/$LAB_HOST_NS" ip addr del 169.254.169.254/32 dev "$LAB_BRIDGE" 2>/dev/null || true
}

nginx_stop() {
	[ -z "$NGINX_PID" ] || stop_server_pid "$NGINX_PID"
	NGINX_PID=
}

# The null responder (tests/bench/null_responder.c): as many workers as
# imdsd, one SO_REUSEPORT listener each; one process, so its CPU is one PID's.
null_start() { # DIR
	local dir=$1
	nsenter --net="/run/netns/$LAB_HOST_NS" ip addr replace 169.254.169.254/32 dev "$LAB_BRIDGE"
	nsenter --net="/run/netns/$LAB_HOST_NS" "$BUILD/bench/null_responder" --workers "$WORKERS" \
		</dev/null >>"$dir/null.log" 2>&1 &
	NULL_PID=$!
	wait_listening "$NULL_PID" "the null responder" "$dir/null.log" || return 1
	SERVER_PIDS=$NULL_PID
}

null_stop() {
	[ -z "$NULL_PID" ] || stop_server_pid "$NULL_PID"
	NULL_PID=
}

# nginx.conf for the tree saved from imdsd: one root per VM, chosen by the
# source address; a listing is the file _index of its directory.
nginx_conf() { # DIR
	local dir=$1 ip nofile files cache
	nofile=$(ulimit -Hn)
	[ "$nofile" != unlimited ] || nofile=1048576
	files=$(find "$dir/tree" -type f | wc -l)
	cache=$((nofile - 4 * $(ls "$dir/tree" | wc -l) - 1000))
	cache=$((cache > files + 1000 ? files + 1000 : cache < 1000 ? 1000 : cache))
	mkdir -p "$dir/nginx/tmp"
	{
		cat <<EOF
# generated by scripts/bench.sh
worker_processes $WORKERS;
worker_rlimit_nofile $nofile;
# open_file_cache keeps an fd open per cached file, within the open-file
# limit: the hard limit of this shell ($nofile; raising it needs
# CAP_SYS_RESOURCE), less room for the connections.
user root;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events {
	worker_connections 16384;
}
http {
	access_log off;
	server_tokens off;
	etag off;
	sendfile on;
	tcp_nopush on;                   # headers and body in one segment
	tcp_nodelay on;
	keepalive_timeout 10s;           # imdsd's idle timeout
	keepalive_requests 1000000;
	open_file_cache max=$cache inactive=120s; # the tree has $files files
	open_file_cache_valid 3600s;
	open_file_cache_min_uses 1;
	open_file_cache_errors on;
	types { }
	default_type text/plain;
	client_body_temp_path $dir/nginx/tmp/body;
	proxy_temp_path $dir/nginx/tmp/proxy;
	fastcgi_temp_path $dir/nginx/tmp/fastcgi;
	uwsgi_temp_path $dir/nginx/tmp/uwsgi;
	scgi_temp_path $dir/nginx/tmp/scgi;
	map_hash_max_size 16384;
	map_hash_bucket_size 64;
	map \$remote_addr \$vm_root {
		default $dir/tree/none;
EOF
		for ip in $(ls "$dir/tree"); do
			echo "		$ip $dir/tree/$ip;"
		done
		cat <<EOF
	}
	server {
		listen 169.254.169.254:80 reuseport backlog=4096;
		root \$vm_root;
		# IMDSv2: a fixed token (nginx cannot mint and check real ones).
		location = /latest/api/token {
			if (\$request_method != PUT) {
				return 405;
			}
			add_header X-aws-ec2-metadata-token-ttl-seconds 21600;
			return 200 "AQAEAbenchfixedtokenbenchfixedtokenbenchfixedtoken==";
		}
		location / {
			index _index;
			try_files \$uri \$uri/_index =404;
		}
	}
}
EOF
	} >"$dir/nginx/nginx.conf"
}

server_start() { # imdsd|nginx|null DIR
	case "$1" in
	imdsd) imdsd_start ;;
	nginx) nginx_start "$2" ;;
	null) null_start "$2" ;;
	esac
}

server_stop() { # imdsd|nginx|null
	case "$1" in
	imdsd) imdsd_stop ;;
	nginx) nginx_stop ;;
	null) null_stop ;;
	esac
}

# Repetition r's order: the servers turned r-1 places round the circle, so
# each starts a repetition in turn and none always follows the same one.
server_order() { # REP
	local -a s
	read -ra s <<<"$SERVERS"
	local i k=$((($1 - 1) % ${#s[@]}))
	for ((i = 0; i < ${#s[@]}; i++)); do
		echo -n "${s[(k + i) % ${#s[@]}]} "
	done
}

# What imds-storm is told about each server in the timed storms: the same
# client work for all three (statuses only, walking the listings imdsd's
# checked crawl saved), so that the client's share of the 2 cores is the
# same whichever server answers; and imdsd's store, for its memory.  A full
# check of every answer costs the client more per request than the null
# responder's whole work (docs/performance.md, "The same client for every
# server"); imdsd's answers are checked in full by checked_storms below.
server_storm_args() { # SERVER DIR
	case "$1" in
	imdsd) echo "--pin-dir $LAB_PIN_DIR --status-only $2/tree" ;;
	*) echo "--status-only $2/tree" ;;
	esac
}

# One storm's report in a log line.
storm_line() { # FILE
	"$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.0f req/s, %.3f s, p99 %.0f us, errors %d" % (d["requests_per_s"], d["completion_s"], d["latency_us"]["p99"], d["errors"]["total"]))' "$1" 2>/dev/null || echo "no result"
}

# imdsd's answers under each storm, every body checked against the VM's
# description (imds-storm's default checks); not timed against the other
# servers, but an error here fails the bench like any other.
checked_storms() { # DIR N REP
	local w
	for w in conn keepalive; do
		# shellcheck disable=SC2046
		storm "$1" "$2" "$1/c$3-imdsd-$w.json" --server-pid "$SERVER_PIDS" $(workload_args "$w" "$2")
		log "N=$2 rep $3 imdsd $w, fully checked: $(storm_line "$1/c$3-imdsd-$w.json")"
	done
}

# --- the storms ---------------------------------------------------------

storm() { # DIR N OUTFILE ARGS...
	local dir=$1 n=$2 out=$3
	shift 3
	"$BUILD/imds-storm" --vms "$dir/vms.json" --netns-prefix "$IMDS_LAB_PREFIX-vm" --suffix "$SFX" --count "$n" \
		--quiet --json "$@" >"$out" || true
}

workload_args() { # WORKLOAD N
	local conns=$CONNS
	[ "$conns" -gt 0 ] || conns=$(($2 < 200 ? $2 : 200))
	case "$1" in
	conn) echo "--mode conn" ;;
	keepalive) echo "--mode keepalive" ;;
	steady) echo "--mode steady --conns $conns --duration $DURATION" ;;
	esac
}

# perf profile of a server under one workload, repeated for at least 3 s (a
# storm of 50 VMs lasts a fraction of a second); the report goes to the doc.
perf_profile() { # DIR N WORKLOAD SERVER
	local dir=$1 n=$2 w=$3 srv=$4 perf_pid t0 i=0 p=perf-$3
	[ "$srv" = imdsd ] || p=perf-$srv-$w
	server_start "$srv" "$dir"
	perf record -F 1999 -p "$SERVER_PIDS" -o "$dir/$p.data" >/dev/null 2>"$dir/$p.record.log" &
	perf_pid=$!
	sleep 0.5
	t0=$(date +%s%N)
	while [ $(($(date +%s%N) - t0)) -lt 3000000000 ]; do
		i=$((i + 1))
		# shellcheck disable=SC2046
		storm "$dir" "$n" "$dir/$p-$i.json" --server-pid "$SERVER_PIDS" $(server_storm_args "$srv" "$dir") \
			$(workload_args "$w" "$n")
	done
	kill -INT "$perf_pid" 2>/dev/null || true
	wait "$perf_pid" 2>/dev/null || true
	server_stop "$srv"
	{
		echo "# $srv, $w workload, $i storm(s); share of samples by object, then by symbol"
		perf report -i "$dir/$p.data" --stdio --no-children --sort dso --percent-limit 2 2>/dev/null |
			grep -E '^ +[0-9]'
		perf report -i "$dir/$p.data" --stdio --no-children --sort dso,symbol --percent-limit 0.7 2>/dev/null |
			grep -E '^ +[0-9]' | head -30
	} | sed -e 's/[ -]*$//' >"$dir/$p.txt" || true
}

bench_n() { # N
	local n=$1 dir=$OUT/n$1 rep srv w repeat=$STORM_REPEAT
	if [ "$repeat" -le 0 ]; then
		repeat=$((1000 / n))
		repeat=$((repeat < 1 ? 1 : repeat > 5 ? 5 : repeat))
	fi
	mkdir -p "$dir"
	log "N=$n: lab of $n VMs"
	local t0=$SECONDS
	"$LAB_SH" up "$SFX" "$n" --static-neigh
	"$PYTHON" "$ROOT/scripts/gen-vms.py" "$n" --bench -o "$dir/vms.json"
	"$LAB_SH" loadmap "$SFX" load "$dir/vms.json" >/dev/null
	log "N=$n: lab ready in $((SECONDS - t0)) s; imdsd answers, saved as nginx's tree"
	t0=$SECONDS
	imdsd_start
	log "N=$n: imdsd ready in $((SECONDS - t0)) s (attached $n ports)"
	rm -rf "$dir/tree"
	storm "$dir" "$n" "$dir/save.json" --mode keepalive --server-pid "$SERVER_PIDS" --save "$dir/tree"
	imdsd_stop
	if ! "$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(d["errors"]["total"] != 0 or d["crawls"] != int(sys.argv[2]))' "$dir/save.json" "$n"; then
		log "N=$n: the checked crawl that makes nginx's tree failed:"
		cat "$dir/save.json" >&2
		return 1
	fi
	nginx_conf "$dir"
	for ((rep = 1; rep <= REPS; rep++)); do
		for srv in $(server_order "$rep"); do
			server_start "$srv" "$dir"
			for w in $WORKLOADS; do
				local k times=1
				[ "$w" = steady ] || times=$repeat
				for ((k = 1; k <= times; k++)); do
					local extra=() f=$dir/r$rep-$srv-$w-$k.json
					[ "$rep" != "$REPS" ] || [ "$k" != "$times" ] || extra+=(--plot "$dir/latency-$w-$srv.svg")
					# shellcheck disable=SC2046
					storm "$dir" "$n" "$f" --server-pid "$SERVER_PIDS" "${extra[@]}" \
						$(server_storm_args "$srv" "$dir") $(workload_args "$w" "$n")
					log "N=$n rep $rep $srv $w #$k: $(storm_line "$f")"
				done
			done
			[ "$srv" != imdsd ] || checked_storms "$dir" "$n" "$rep"
			server_stop "$srv"
		done
	done
	for w in $WORKLOADS; do
		plot_servers "$dir" "$n" "$w"
	done
	if [ "$PERF" = 1 ] && command -v perf >/dev/null; then
		log "N=$n: perf profile of imdsd (conn, steady) and of the null responder (conn)"
		perf_profile "$dir" "$n" conn imdsd
		perf_profile "$dir" "$n" steady imdsd
		perf_profile "$dir" "$n" conn null
	fi
	"$LAB_SH" down "$SFX"
	[ "$KEEP" = 1 ] || rm -rf "$dir/tree" "$dir"/perf-*.data
}

# The servers on one latency plot (the last repetition).
plot_servers() { # DIR N WORKLOAD
	local dir=$1 n=$2 w=$3 srv plots=
	for srv in $SERVERS; do
		[ -f "$dir/latency-$w-$srv.svg.dat" ] || return 0
		plots+="${plots:+, }'$dir/latency-$w-$srv.svg.dat' using 3:(\$1/1000) with steps lw 2 title '$srv'"
	done
	gnuplot <<EOF || log "gnuplot failed for $w"
set terminal svg size 900,540
set output '$dir/latency-$w.svg'
set title 'latency by percentile: $w, $n VMs (repetition $REPS)'
set logscale x
set logscale y
set grid
set key left top
set xlabel 'percentile'
set ylabel 'latency (ms)'
set xtics ('0%%' 1, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000, '99.999%%' 100000)
plot $plots
EOF
}

# --- main ---------------------------------------------------------------

# All of it in one function, read whole before it runs: editing this file
# during a run cannot change what the run does.
main() {
	{
		echo "command: $COMMAND"
		echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "kernel: $(uname -r); cpus: $(nproc); memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
		echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //')"
		echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (with local changes)')"
		echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "settings: reps $REPS, storms run ${STORM_REPEAT/#0/min(5,1000/N)} times per rep, steady duration $DURATION s, steady connections ${CONNS/#0/min(N,200)}, workers $WORKERS (imdsd, nginx, null)"
	} | tee "$OUT/env.txt" >&2

	for n in ${VMS_LIST//,/ }; do
		bench_n "$n"
	done

	if [ "$FLOOD" = 1 ]; then
		log "flood check (issue 4 acceptance 2)"
		IMDS_BUILD=$BUILD "$ROOT/scripts/bench-flood.sh" --out "$OUT/flood" >&2 || log "flood check FAILED"
	fi
	echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/env.txt" >&2

	"$PYTHON" "$ROOT/scripts/bench-report.py" "$OUT" | tee "$OUT/report.md"
}

main; exit $?
