#!/usr/bin/env bash
# Webhook benchmark (GitHub issue "webhook", item 8): hostgate /validate over keep-alive HTTPS
# against nginx answering a static 200 over TLS 1.3 in the same run, loopback only, bounded.
#
#   bench/webhook-load.sh                 # 3 runs x 2 CPU layouts, about 8 minutes
#   RUNS=1 LAYOUTS=split bench/webhook-load.sh   # one quick pass
#   bench/webhook-load.sh profile [SECONDS]      # perf profile of hostgate under saturation
#
# Per run and layout, a fresh hostgate (`dist` profile, as the images ship it; policies/) and a
# fresh nginx-light on 127.0.0.1 share one certificate (P-256, made here with openssl), and this
# script measures:
#   (a) saturation: wrk -t1 -c16 -d8s with bench/wrk-admission.lua against hostgate /validate
#       with a real captured HostProcess review, with the generated 2,000-review workload, and
#       against nginx; then hostgate-loadgen --rate max against both;
#   (b) latency: hostgate-loadgen open loop at 1,000/s and 5,000/s for 10 s (+1 s warm-up),
#       latency from each request's intended send time (p50/p99/p99.9);
#   (c) memory: hostgate VmRSS idle after start, VmHWM (peak) after all the load, VmRSS after.
# Then bench/summarize.py prints a table (median [min – max] over runs) and writes results.json.
#
# CPU layouts (for a 2-core machine, CPUs 0 and 1):
#   split  — server (hostgate, nginx) on CPU 0, load generator on CPU 1: each side gets exactly
#            one core, so the server's figure is per-core and the generator never steals from it.
#   shared — nothing pinned: server (2 runtime threads / 2 nginx workers) and generator share
#            both cores, as a webhook pod sharing a node would.
#
# Environment knobs: RUNS (3), LAYOUTS ("split shared"), CONNECTIONS (16), SAT_SECONDS (8),
# LAT_SECONDS (10), WORKLOAD_SIZE (2000), HOSTGATE_PORT (18443), NGINX_PORT (18444),
# HOSTGATE_BIN (skip building hostgate, use this binary), LOADGEN_BIN, RESULTS_DIR
# (bench/results), BENCH_WORK (/tmp/hostgate-bench: certificates, workload, nginx prefix),
# NO_INSTALL=1 (never apt-get/pip), CARGO_TARGET_DIR, QUIET_WAIT (120: seconds to wait for
# other work to stop before each run), QUIET_MAX_PCT (10: share of the machine that other work
# may use during a run before the run is repeated), RETRIES (2: repeats of a disturbed run).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
RUNS=${RUNS:-3}
LAYOUTS=${LAYOUTS:-"split shared"}
CONNECTIONS=${CONNECTIONS:-16}
SAT_SECONDS=${SAT_SECONDS:-8}
LAT_SECONDS=${LAT_SECONDS:-10}
WORKLOAD_SIZE=${WORKLOAD_SIZE:-2000}
HOSTGATE_PORT=${HOSTGATE_PORT:-18443}
NGINX_PORT=${NGINX_PORT:-18444}
WORK=${BENCH_WORK:-/tmp/hostgate-bench}
RESULTS_DIR=${RESULTS_DIR:-$BENCH/results}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REVIEW="$ROOT/tests/data/admissionreview/pod-create-hostprocess-valid.validating.json"
HOST=127.0.0.1 # loopback only: every address below is on this machine

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'webhook-load.sh: %s\n' "$*" >&2; exit 1; }

# --- processes we start, and their cleanup -------------------------------------------------
HOSTGATE_PID=""
NGINX_PID=""
OTHER_PCT=0
PHASES=""
stop_pid() { # pid: TERM, wait up to 5 s, then KILL
    local pid=$1
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
stop_servers() {
    stop_pid "$HOSTGATE_PID"; HOSTGATE_PID=""
    stop_pid "$NGINX_PID"; NGINX_PID=""
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

# --- tools ---------------------------------------------------------------------------------
install_missing() {
    local pkgs=()
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || pkgs+=(nginx-light)
    command -v wrk >/dev/null || pkgs+=(wrk)
    command -v openssl >/dev/null || pkgs+=(openssl)
    command -v curl >/dev/null || pkgs+=(curl)
    command -v taskset >/dev/null || pkgs+=(util-linux)
    if ((${#pkgs[@]})); then
        [[ "${NO_INSTALL:-}" == 1 ]] && die "missing: ${pkgs[*]} (NO_INSTALL=1)"
        log "installing ${pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
        # Debian starts the packaged nginx service on port 80; this benchmark runs its own.
        if [[ " ${pkgs[*]} " == *" nginx-light "* ]] && command -v systemctl >/dev/null; then
            systemctl disable --now nginx >/dev/null 2>&1 || true
        fi
    fi
    if ! python3 -c 'import yaml' 2>/dev/null; then
        [[ "${NO_INSTALL:-}" == 1 ]] && die "python3 module yaml missing (NO_INSTALL=1)"
        log "installing pyyaml"
        python3 -m pip install -q pyyaml
    fi
}

port_free() { ! ss -Htln "sport = :$1" | grep -q .; }

build() {
    if [[ -z "${HOSTGATE_BIN:-}" ]]; then
        log "building hostgate and hostgate-loadgen (dist profile, as shipped)"
        (cd "$ROOT" && cargo build --profile dist -p hostgate \
            && cargo build --profile dist --manifest-path tools/loadgen/Cargo.toml --target-dir "$TARGET_DIR")
        HOSTGATE_BIN="$TARGET_DIR/dist/hostgate"
    elif [[ -z "${LOADGEN_BIN:-}" ]]; then
        log "building hostgate-loadgen (dist profile)"
        (cd "$ROOT" && cargo build --profile dist --manifest-path tools/loadgen/Cargo.toml --target-dir "$TARGET_DIR")
    fi
    LOADGEN_BIN=${LOADGEN_BIN:-$TARGET_DIR/dist/hostgate-loadgen}
    [[ -x "$HOSTGATE_BIN" ]] || die "no hostgate binary at $HOSTGATE_BIN"
    [[ -x "$LOADGEN_BIN" ]] || die "no hostgate-loadgen binary at $LOADGEN_BIN"
    "$HOSTGATE_BIN" serve --help >/dev/null 2>&1 || die "$HOSTGATE_BIN has no 'serve' command yet"
}

# --- inputs: certificate, bodies, nginx answer ---------------------------------------------
make_cert() {
    local d="$WORK/tls"
    [[ -s "$d/tls.crt" && -s "$d/tls.key" && -s "$d/ca.crt" ]] &&
        openssl x509 -checkend 86400 -noout -in "$d/tls.crt" >/dev/null 2>&1 && return 0
    log "making a CA and a serving certificate for 127.0.0.1 (P-256) in $d"
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=hostgate bench CA" -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=hostgate bench" -keyout "$d/tls.key" -out "$d/tls.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$d/ext.cnf"
    openssl x509 -req -in "$d/tls.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
        -days 30 -extfile "$d/ext.cnf" -out "$d/tls.crt" 2>/dev/null
    chmod 600 "$d/tls.key" "$d/ca.key"
}

make_bodies() {
    [[ -s "$REVIEW" ]] || die "missing $REVIEW"
    printf '%s\n' "$REVIEW" >"$WORK/review.list"
    local wl="$WORK/workload"
    if [[ ! -f "$wl/.done-$WORKLOAD_SIZE" ]]; then
        log "generating the $WORKLOAD_SIZE-review workload (bench/gen-workload.py)"
        rm -rf "$wl"
        python3 "$BENCH/gen-workload.py" "$WORKLOAD_SIZE" "$wl" >&2
        touch "$wl/.done-$WORKLOAD_SIZE"
    fi
    find "$wl/admissionreviews" -name '*.json' | sort >"$WORK/workload.list"
    [[ $(wc -l <"$WORK/workload.list") -eq $WORKLOAD_SIZE ]] || die "workload incomplete"
}

# nginx answers every request with a static AdmissionReview-shaped JSON body of the same size
# as hostgate's answer to the captured review (no `$`, quotes or backslashes: it is inlined).
nginx_answer() {
    local size=$1 head tail pad
    head='{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"fbbb9e3c-99ae-4c51-858d-f7098d8bcbbd","allowed":true,"padding":"'
    tail='"}}'
    pad=$((size - ${#head} - ${#tail}))
    ((pad < 0)) && pad=0
    printf '%s%s%s' "$head" "$(head -c "$pad" /dev/zero | tr '\0' x)" "$tail"
}

write_nginx_conf() { # workers answer_size
    local workers=$1 answer
    answer=$(nginx_answer "$2")
    mkdir -p "$WORK/nginx/logs"
    cat >"$WORK/nginx/nginx.conf" <<EOF
# Written by bench/webhook-load.sh: the machine's ceiling, a static 200 over TLS 1.3.
worker_processes $workers;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    client_body_buffer_size 64k;
    server {
        listen $HOST:$NGINX_PORT ssl;
        ssl_certificate $WORK/tls/tls.crt;
        ssl_certificate_key $WORK/tls/tls.key;
        ssl_protocols TLSv1.3;
        location / {
            default_type application/json;
            return 200 '$answer';
        }
    }
}
EOF
}

# --- servers -------------------------------------------------------------------------------
wait_https() { # url
    for _ in $(seq 100); do
        curl -fsS --cacert "$WORK/tls/ca.crt" -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

start_hostgate() { # cpus
    port_free "$HOSTGATE_PORT" || die "port $HOSTGATE_PORT is busy (HOSTGATE_PORT=…)"
    # shellcheck disable=SC2086
    $1 "$HOSTGATE_BIN" serve --policies "$ROOT/policies" \
        --bind-address "$HOST" --secure-port "$HOSTGATE_PORT" \
        --tls-cert-file "$WORK/tls/tls.crt" --tls-private-key-file "$WORK/tls/tls.key" \
        --log-level warn --shutdown-delay 0s --shutdown-timeout 2s >"$WORK/hostgate.log" 2>&1 &
    HOSTGATE_PID=$!
    wait_https "https://$HOST:$HOSTGATE_PORT/readyz" ||
        { cat "$WORK/hostgate.log" >&2; die "hostgate did not become ready"; }
}

start_nginx() { # cpus
    port_free "$NGINX_PORT" || die "port $NGINX_PORT is busy (NGINX_PORT=…)"
    # shellcheck disable=SC2086
    $1 nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
    NGINX_PID=$!
    wait_https "https://$HOST:$NGINX_PORT/" ||
        { cat "$WORK/nginx/logs/error.log" >&2; die "nginx did not start"; }
}

# CPU accounting from /proc/stat and /proc/$$/stat, in clock ticks: what the machine spent
# busy (user + nice + system + irq + softirq, all CPUs: with tick accounting a task is also
# charged the irq/softirq ticks that hit it) plus steal (time the hypervisor gave our vCPUs to
# other guests: other work too, just not ours to see), everything it could have spent, and
# what this script's finished children (servers, load generators) spent.
# Other work = machine - ours.
machine_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
children_ticks() { awk '{print $16+$17}' "/proc/$$/stat"; }
# Ticks used so far by this script's finished children plus its live servers (and their
# workers); the comm field of /proc/PID/stat has no spaces for these programs.
our_ticks() {
    local t pid
    t=$(children_ticks)
    for pid in $HOSTGATE_PID $NGINX_PID ${NGINX_PID:+$(pgrep -P "$NGINX_PID" || true)}; do
        [[ -r "/proc/$pid/stat" ]] && t=$((t + $(awk '{print $14+$15}' "/proc/$pid/stat")))
    done
    echo "$t"
}

# Runs one measurement ("name" then the command) and records the share of the machine that
# other work used meanwhile in $PHASES (name:pct ...) and the largest in $OTHER_PCT.
phase() {
    local name=$1 m0 m1 o0 o1 other
    shift
    read -r -a m0 <<<"$(machine_ticks)"
    o0=$(our_ticks)
    "$@"
    read -r -a m1 <<<"$(machine_ticks)"
    o1=$(our_ticks)
    other=$(pct $((m1[0] - m0[0] - (o1 - o0))) $((m1[1] - m0[1])))
    ((other < 0)) && other=0
    PHASES+="\"$name\": $other, "
    ((other > OTHER_PCT)) && OTHER_PCT=$other
    return 0
}
pct() { awk -v n="$1" -v d="$2" 'BEGIN { printf "%.0f", (d > 0) ? 100 * n / d : 0 }'; }

# CPU busy % of the whole machine over one second, to catch other work (a build, another
# benchmark) that would skew the figures.
cpu_busy_pct() {
    local a b
    read -r -a a <<<"$(machine_ticks)"
    sleep 1
    read -r -a b <<<"$(machine_ticks)"
    pct $((b[0] - a[0])) $((b[1] - a[1]))
}

# Waits (up to QUIET_WAIT seconds) until the machine is idle before a run.
wait_quiet() {
    local busy waited=0
    while busy=$(cpu_busy_pct); ((busy > ${QUIET_MAX_PCT:-10})); do
        if ((waited >= ${QUIET_WAIT:-120})); then
            log "warning: the machine is still ${busy}% busy with other work; measuring anyway"
            return 0
        fi
        ((waited == 0)) && log "the machine is ${busy}% busy with other work; waiting for quiet (QUIET_WAIT=${QUIET_WAIT:-120}s)"
        waited=$((waited + 1))
    done
}

vm() { # pid field -> kB
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# --- one run -------------------------------------------------------------------------------
wrk_run() { # out url list
    $LOAD_CPUS wrk -t1 -c"$CONNECTIONS" -d"${SAT_SECONDS}s" --latency \
        -s "$BENCH/wrk-admission.lua" "$2" -- "$3" >"$1" 2>&1 || true
}

loadgen_run() { # out url rate [extra args]
    local out=$1 url=$2 rate=$3
    shift 3
    # Exit status 2 (some request failed) still leaves a report; summarize.py flags it.
    $LOAD_CPUS "$LOADGEN_BIN" "$url" --cacert "$WORK/tls/ca.crt" --json \
        -c "$CONNECTIONS" --rate "$rate" --body-list "$WORK/review.list" "$@" \
        >"$out" 2>"$out.err" || [[ $? == 2 ]] || { cat "$out.err" >&2; die "loadgen failed"; }
}

one_run() { # layout run_dir
    local layout=$1 dir=$2 server_cpus workers
    case $layout in
    split) server_cpus="taskset -c 0"; LOAD_CPUS="taskset -c 1"; workers=1 ;;
    shared) server_cpus=""; LOAD_CPUS=""; workers=2 ;;
    *) die "unknown layout $layout (split or shared)" ;;
    esac
    mkdir -p "$dir"
    local hg="https://$HOST:$HOSTGATE_PORT" ng="https://$HOST:$NGINX_PORT"
    OTHER_PCT=0
    PHASES=""

    wait_quiet
    start_hostgate "$server_cpus"
    # One idle second: hostgate settles, and the machine's busy % shows other work, if any.
    local idle
    sleep 1
    idle=$(vm "$HOSTGATE_PID" VmRSS)
    # The size of hostgate's answer to the captured review, for nginx's static answer.
    local answer_size
    answer_size=$(curl -fsS --cacert "$WORK/tls/ca.crt" -H 'Content-Type: application/json' \
        --data-binary @"$REVIEW" "$hg/validate" | wc -c)
    write_nginx_conf "$workers" "$answer_size"
    start_nginx "$server_cpus"

    log "[$layout] saturation (wrk -t1 -c$CONNECTIONS -d${SAT_SECONDS}s)"
    phase wrk_hostgate_review wrk_run "$dir/wrk-hostgate-review.txt" "$hg/validate" "$WORK/review.list"
    phase wrk_hostgate_workload wrk_run "$dir/wrk-hostgate-workload.txt" "$hg/validate" "$WORK/workload.list"
    phase wrk_nginx wrk_run "$dir/wrk-nginx.txt" "$ng/" "$WORK/review.list"
    grep -h 'Requests/sec' "$dir"/wrk-*.txt >&2 || true

    log "[$layout] saturation (hostgate-loadgen --rate max)"
    phase loadgen_hostgate_max loadgen_run "$dir/loadgen-hostgate-max.json" "$hg/validate" max -d "${SAT_SECONDS}s" -w 1s --expect-review
    phase loadgen_nginx_max loadgen_run "$dir/loadgen-nginx-max.json" "$ng/" max -d "${SAT_SECONDS}s" -w 1s

    log "[$layout] latency at 1,000/s and 5,000/s (open loop, ${LAT_SECONDS}s each)"
    phase loadgen_hostgate_1000 loadgen_run "$dir/loadgen-hostgate-1000.json" "$hg/validate" 1000 -d "${LAT_SECONDS}s" -w 1s --expect-review
    phase loadgen_hostgate_5000 loadgen_run "$dir/loadgen-hostgate-5000.json" "$hg/validate" 5000 -d "${LAT_SECONDS}s" -w 1s --expect-review

    local peak after threads
    peak=$(vm "$HOSTGATE_PID" VmHWM)
    after=$(vm "$HOSTGATE_PID" VmRSS)
    threads=$(vm "$HOSTGATE_PID" Threads)
    stop_servers
    # other_cpu_pct: the largest share of the machine that work other than this run used
    # during one of its measurements (by_phase: each of them).
    printf '{"idle_kib": %s, "peak_kib": %s, "after_kib": %s, "threads": %s, "answer_bytes": %s, "other_cpu_pct": %s, "other_cpu_pct_by_phase": {%s}}\n' \
        "$idle" "$peak" "$after" "$threads" "$answer_size" "$OTHER_PCT" "${PHASES%, }" >"$dir/rss.json"
}

# Profile: hostgate (built with line tables, CPU 0) saturated by hostgate-loadgen (CPU 1);
# perf samples the server only; bench/perf-categories.py charges each sample to a layer.
profile() {
    local seconds=${1:-8} out stamp
    command -v perf >/dev/null || {
        [[ "${NO_INSTALL:-}" == 1 ]] && die "perf missing (NO_INSTALL=1)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
    }
    if [[ -z "${HOSTGATE_BIN:-}" ]]; then
        log "building hostgate with line tables for perf (target dir $TARGET_DIR/profiling)"
        (cd "$ROOT" && CARGO_PROFILE_DIST_DEBUG=line-tables-only \
            cargo build --profile dist -p hostgate --target-dir "$TARGET_DIR/profiling")
        HOSTGATE_BIN="$TARGET_DIR/profiling/dist/hostgate"
    fi
    build
    mkdir -p "$WORK"
    make_cert
    make_bodies
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    out="$RESULTS_DIR/profile-$stamp"
    mkdir -p "$out"
    wait_quiet
    start_hostgate "taskset -c 0"
    LOAD_CPUS="taskset -c 1"
    log "saturating hostgate for $((seconds + 2))s; perf samples it for ${seconds}s"
    $LOAD_CPUS "$LOADGEN_BIN" "https://$HOST:$HOSTGATE_PORT/validate" --cacert "$WORK/tls/ca.crt" \
        -c "$CONNECTIONS" --rate max -d "$((seconds + 2))s" --body-list "$WORK/review.list" \
        --expect-review >"$out/loadgen.txt" 2>&1 &
    local lg=$!
    sleep 1
    perf record -q -F 1999 --call-graph dwarf,16384 -p "$HOSTGATE_PID" -o "$out/perf.data" \
        -- sleep "$seconds" 2>/dev/null
    wait "$lg" || true
    stop_servers
    perf script -i "$out/perf.data" 2>/dev/null | python3 "$BENCH/perf-categories.py" | tee "$out/categories.md"
    perf report -i "$out/perf.data" --no-children --sort symbol --stdio -g none --percent-limit 0.5 \
        2>/dev/null | grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//' >"$out/top-symbols.txt" || true
    head -25 "$out/top-symbols.txt"
    cat "$out/loadgen.txt"
    log "profile in $out (perf.data, categories.md, top-symbols.txt)"
}

main() {
    if [[ "${1:-}" == profile ]]; then
        install_missing
        profile "${2:-8}"
        return
    fi
    [[ $# -eq 0 || "${1:-}" == run ]] || die "usage: $0 [run | profile [SECONDS]]"
    install_missing
    build
    mkdir -p "$WORK"
    make_cert
    make_bodies
    local stamp out
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    out="$RESULTS_DIR/$stamp"
    mkdir -p "$out"
    python3 - "$out/machine.json" <<EOF
import json, os, platform, subprocess, sys
def sh(*c):
    try: return subprocess.run(c, capture_output=True, text=True, cwd="$ROOT").stdout.strip() or subprocess.run(c, capture_output=True, text=True).stderr.strip()
    except OSError: return "?"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
json.dump({
  "date": "$stamp", "commit": sh("git", "rev-parse", "--short", "HEAD"),
  "dirty": bool(sh("git", "status", "--porcelain", "--untracked-files=no")),
  "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
  "rustc": sh("rustc", "--version"), "nginx": sh("nginx", "-v"), "wrk": sh("wrk", "-v").splitlines()[0],
  "runs": $RUNS, "connections": $CONNECTIONS, "sat_seconds": $SAT_SECONDS, "lat_seconds": $LAT_SECONDS,
  "workload_size": $WORKLOAD_SIZE,
  "layouts": {"split": "server (hostgate, nginx: 1 worker) on CPU 0, load generator on CPU 1",
              "shared": "nothing pinned: server (2 threads / 2 nginx workers) and generator share 2 CPUs"},
}, open(sys.argv[1], "w"), indent=1)
EOF
    local attempt
    for run in $(seq "$RUNS"); do
        for layout in $LAYOUTS; do
            # A run during which other work took more than QUIET_MAX_PCT of the machine is
            # kept aside (discarded-*) and repeated, up to RETRIES times.
            for attempt in $(seq 0 "${RETRIES:-2}"); do
                local note=""
                ((attempt)) && note=" (repeat $attempt)"
                log "run $run/$RUNS, layout $layout$note"
                one_run "$layout" "$out/$layout/run$run"
                ((OTHER_PCT <= ${QUIET_MAX_PCT:-10})) && break
                ((attempt == ${RETRIES:-2})) && { log "other work kept using ${OTHER_PCT}% of the machine; keeping this run"; break; }
                log "other work used ${OTHER_PCT}% of the machine during this run; repeating it"
                mv "$out/$layout/run$run" "$out/$layout/discarded-run$run-$attempt"
                wait_quiet
            done
        done
    done
    python3 "$BENCH/summarize.py" "$out" | tee "$out/summary.md"
    ln -sfn "$stamp" "$RESULTS_DIR/latest"
}

main "$@"
