#!/usr/bin/env bash
# Per-I/O cost of polltgt's data path, reproducible on a loaded machine.
#
#   bash bench/profile.sh [--callgrind] [--mode poll|interrupt] [--seconds N] [--no-build] [--bin POLLTGT] [--no-syscalls] [WORKLOAD...]
#
# WORKLOAD: read4k (4 KiB random read QD32, the default), read4kqd1 (the same at QD1), read128k (128 KiB read QD8), write4k (4 KiB write QD32).
# For each it starts the release build of polltgt (one reactor pinned to CPU 1, a 1 GiB RAM LUN, MSG_ZEROCOPY
# threshold 64 KiB, idle mode --mode), runs the initiator on CPU 0, and after a warm-up measures over --seconds:
#
# - default: the bench's initiators (iscsi-perf; iscsi-rw from tests/tools for write4k, sequential), reactor busy
#   µs per command (from the SIGUSR1 statistics line), process CPU µs per command (/proc) and system calls per
#   command (perf stat -e raw_syscalls:sys_enter, when perf is installed and --no-syscalls is not given: the
#   tracepoints slow every system call down a little, so compare busy times with --no-syscalls; in poll mode these include the idle
#   polls while the initiator is slow), by name, and the readv(2)s that returned data (the rest are empty polls);
# - --callgrind: polltgt runs under valgrind's callgrind with instrumentation on only for the measured interval,
#   driven by iscsi-batch (bench/src/bin/iscsi-batch.rs: each batch of QD commands in one write, then all their
#   statuses, so the target sees the same pattern however loaded the machine is). Prints user-space instructions
#   (Ir) per command in busy loop iterations (the idle iterations between batches are taken out with the Ir of an
#   idle iteration measured first with the session logged in), the system calls per command, and keeps the profile
#   (callgrind.out.*.2) for callgrind_annotate. The kernel's work inside system calls is not in Ir.
#
# Needs: iscsi-perf (libiscsi-bin), cc + libiscsi-dev for write4k in the default mode, valgrind for --callgrind.
# Never run by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -f "$HOME/.cargo/env" ]] && source "$HOME/.cargo/env"

CALLGRIND=0
MODE=poll
SECONDS_=5
LOADS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --callgrind) CALLGRIND=1 ;;
        --mode) MODE="$2"; shift ;;
        --seconds) SECONDS_="$2"; shift ;;
        --no-build) NO_BUILD=1 ;;
        --bin) BIN_ARG="$2"; shift ;;
        --no-syscalls) NO_SYSCALLS=1 ;;
        -h|--help) sed -n "2,23p" "$0"; exit 0 ;;
        *) LOADS+=("$1") ;;
    esac
    shift
done
[[ ${#LOADS[@]} -eq 0 ]] && LOADS=(read4k)
[[ -z "${NO_BUILD:-}" ]] && cargo build --release --locked -p polltgt -p polltgt-bench >&2

BIN=${BIN_ARG:-$PWD/target/release/polltgt}
OUT=$(mktemp -d /tmp/polltgt-profile.XXXXXX)
# Below the ephemeral port range (32768+), where other programs' outgoing connections could hold it.
PORT=$((20000 + RANDOM % 12000))
IQN=iqn.2026-11.io.polltgt:profile
URL=iscsi://127.0.0.1:$PORT/$IQN/0
cat >"$OUT/polltgt.yaml" <<EOF
reactors:
  cpu_mask: "0x2"
  idle: $MODE
  zerocopy_threshold: 64K
mgmt:
  rpc_socket: $OUT/rpc.sock
portals:
  - address: "127.0.0.1:$PORT"
devices:
  - name: ram0
    handler: ram
    size: 1024M
    blocksize: 512
targets:
  - name: $IQN
    luns:
      - { lun: 0, device: ram0 }
EOF

RW=""
if [[ " ${LOADS[*]} " == *" write4k "* ]]; then
    RW=$OUT/iscsi-rw
    cc -O2 -o "$RW" tests/tools/iscsi-rw.c -liscsi
fi

PID=""
LOAD=""
stop_load() {
    [[ -n "$LOAD" ]] || return 0
    local kids
    kids=$(pgrep -P "$LOAD" || true)
    kill "$LOAD" $kids 2>/dev/null || true
    wait "$LOAD" 2>/dev/null || true
    LOAD=""
}
cleanup() {
    stop_load
    [[ -n "$PID" ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    true
}
trap cleanup EXIT

start_target() {
    : >"$OUT/polltgt.log"
    if [[ $CALLGRIND -eq 1 ]]; then
        valgrind --tool=callgrind --collect-systime=nsec --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out.$1" \
            "$BIN" serve --config "$OUT/polltgt.yaml" >"$OUT/polltgt.log" 2>&1 &
    else
        RUST_LOG=warn "$BIN" serve --config "$OUT/polltgt.yaml" >"$OUT/polltgt.log" 2>&1 &
    fi
    PID=$!
    for _ in $(seq 600); do
        grep -q "listening on" "$OUT/polltgt.log" && return 0
        sleep 0.1
    done
    echo "polltgt did not start:" >&2; cat "$OUT/polltgt.log" >&2; exit 1
}

stop_target() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
}

# Prints "commands busy_ns iterations busy_iterations" from a fresh statistics line.
stats() {
    local before after
    before=$(grep -c '^polltgt-stats: ' "$OUT/polltgt.log" || true)
    kill -USR1 "$PID"
    for _ in $(seq 200); do
        after=$(grep -c '^polltgt-stats: ' "$OUT/polltgt.log" || true)
        [[ $after -gt $before ]] && break
        sleep 0.05
    done
    grep '^polltgt-stats: ' "$OUT/polltgt.log" | tail -1 | sed 's/^polltgt-stats: //' |
        python3 -c 'import json,sys; s=json.load(sys.stdin); r=s["reactors"]; print(s["datapath"]["commands"], sum(x["busy_ns"] for x in r), sum(x["iterations"] for x in r), sum(x.get("busy_iterations", 0) for x in r))'
}

proc_cpu() {
    awk '{print $14 + $15}' "/proc/$PID/stat"
}

BATCH=$PWD/target/release/iscsi-batch
# System calls counted one by one in the timing mode (perf tracepoints).
SYSCALLS="readv recvfrom writev sendmsg recvmsg epoll_wait epoll_ctl accept4 io_uring_enter futex nanosleep clock_nanosleep read write"

# The timing mode runs the bench's initiators (iscsi-perf, iscsi-rw); callgrind mode runs iscsi-batch
# (bench/src/bin/iscsi-batch.rs), which sends each batch of commands in one write and waits for all of them, so the
# target sees the same pattern however loaded the machine is. $1: workload, $2: seconds to stay idle after login.
start_load() {
    if [[ $CALLGRIND -eq 1 ]]; then
        local args
        case "$1" in
            read4k) args="--qd 32 --bs 4096 --op read" ;;
            read128k) args="--qd 8 --bs 131072 --op read" ;;
            write4k) args="--qd 32 --bs 4096 --op write" ;;
            *) echo "unknown workload $1" >&2; exit 2 ;;
        esac
        taskset -c 0 "$BATCH" $args --idle-first "$2" --seconds 3600 "127.0.0.1:$PORT" "$IQN" >/dev/null 2>&1 &
        LOAD=$!
        return
    fi
    case "$1" in
        read4k) taskset -c 0 iscsi-perf -m 32 -b 8 -r -t 3600 "$URL" >/dev/null 2>&1 & ;;
        read4kqd1) taskset -c 0 iscsi-perf -m 1 -b 8 -r -t 3600 "$URL" >/dev/null 2>&1 & ;;
        read128k) taskset -c 0 iscsi-perf -m 8 -b 256 -t 3600 "$URL" >/dev/null 2>&1 & ;;
        # iscsi-rw writes the whole LUN once and exits: run it again and again.
        write4k) (while taskset -c 0 "$RW" -q 32 -b 8 -s 1 "$URL" write 0 2097144 >/dev/null 2>&1; do :; done) & ;;
        *) echo "unknown workload $1" >&2; exit 2 ;;
    esac
    LOAD=$!
}

# Fields of the dump file of a callgrind_control -d: "Ir sysCount sysTime sysCpuTime" of the interval.
dump_totals() {
    awk '/^totals:/ {print $2, $3, $4, $5}' "$1"
}

for w in "${LOADS[@]}"; do
    start_target "$w"
    if [[ $CALLGRIND -eq 1 ]]; then
        # Calibration: instructions of an idle loop iteration with the session logged in and silent, to take the
        # idle iterations of the measured interval out of its count (the reactor polls on while it waits for the
        # next batch).
        start_load "$w" 6
        sleep 3
        read -r _ _ i0 _ < <(stats)
        callgrind_control -i on "$PID" >/dev/null
        sleep 2
        callgrind_control -i off "$PID" >/dev/null
        read -r _ _ i1 _ < <(stats)
        callgrind_control -d "$PID" >/dev/null
        sleep 5
        read -r c0 _ it0 bi0 < <(stats)
        callgrind_control -i on "$PID" >/dev/null
        sleep "$SECONDS_"
        callgrind_control -i off "$PID" >/dev/null
        read -r c1 _ it1 bi1 < <(stats)
        callgrind_control -d "$PID" >/dev/null
        stop_load
        stop_target
        # Exact counts of the instrumented intervals come from the dumps' call counts (the statistics lines are
        # read a little before and after them): commands = calls of ReactorState::execute, loop iterations = calls
        # of the connection poller. The share of busy iterations comes from the statistics.
        cg_calls() { python3 bench/callgrind_calls.py "$1" 'ReactorState::execute' 'ConnPoller as polltgt_dataplane::reactor::Poller' | awk '{print $1}' | xargs; }
        read -r _ idle_it < <(cg_calls "$OUT/callgrind.out.$w.1")
        read -r n it < <(cg_calls "$OUT/callgrind.out.$w.2")
        [[ $n -gt 0 ]] || { echo "$w: no commands measured" >&2; exit 1; }
        read -r idle_ir idle_sc _ < <(dump_totals "$OUT/callgrind.out.$w.1")
        read -r ir sc _ scpu < <(dump_totals "$OUT/callgrind.out.$w.2")
        python3 - "$w" "$MODE" "$n" "$ir" "$sc" "$scpu" "$idle_ir" "$idle_sc" "$idle_it" "$it" "$((it1 - it0))" \
            "$((bi1 - bi0))" "$OUT/callgrind.out.$w.2" <<'PY'
import sys
w, mode, n, ir, sc, scpu, idle_ir, idle_sc, idle_it, it, st_it, st_bit, f = sys.argv[1:]
n, ir, sc, it = int(n), int(ir), int(sc), int(it)
idle_it = max(int(idle_it), 1)
per_idle, sc_idle = int(idle_ir) / idle_it, int(idle_sc) / idle_it
bit = it * int(st_bit) / max(int(st_it), 1)
busy_ir = ir - (it - bit) * per_idle
busy_sc = sc - (it - bit) * sc_idle
print(f"{w} mode={mode} callgrind: {n} commands, {n / max(bit, 1):.1f} per busy iteration; busy iterations: "
      f"{busy_ir / n:.0f} Ir/command (user space), {busy_sc / n:.3f} syscalls/command; all iterations: "
      f"{ir / n:.0f} Ir/command, {sc / n:.3f} syscalls/command, {int(scpu) / 1e3 / n:.2f} us system CPU/command "
      f"under valgrind; an idle iteration: {per_idle:.0f} Ir, {sc_idle:.2f} syscalls (profile: {f})")
PY
    else
        start_load "$w" 0
        sleep 2
        read -r c0 b0 _ _ < <(stats)
        p0=$(proc_cpu)
        sc=""
        by=""
        if [[ -z "${NO_SYSCALLS:-}" ]] && command -v perf >/dev/null; then
            # All system calls, and the ones the data path makes by name (the rest: reactor sleeps, timers, ...).
            # readv(2)s that returned data are counted apart from the empty polls (EAGAIN), which in poll mode
            # depend on how long the reactor waits for the (loaded) initiator, not on the commands.
            perf stat -x, -e raw_syscalls:sys_enter $(printf -- '-e syscalls:sys_enter_%s ' $SYSCALLS) \
                -e syscalls:sys_exit_readv --filter 'ret > 0' -p "$PID" \
                -- sleep "$SECONDS_" >"$OUT/perf.$w" 2>&1 || true
            sc=$(awk -F, '/raw_syscalls:sys_enter/ {print $1}' "$OUT/perf.$w")
            by=$(awk -F, '/syscalls:sys_enter_/ && $1 > 0 {sub(/.*sys_enter_/, "", $3); printf "%s=%s ", $3, $1}
                /syscalls:sys_exit_readv/ {printf "readv_with_data=%s ", $1}' "$OUT/perf.$w")
        else
            sleep "$SECONDS_"
        fi
        read -r c1 b1 _ _ < <(stats)
        p1=$(proc_cpu)
        stop_load
        stop_target
        n=$((c1 - c0))
        python3 - "$w" "$MODE" "$n" "$b0" "$b1" "$p0" "$p1" "${sc:-0}" "$SECONDS_" "$by" <<'PY'
import sys
w, mode, n, b0, b1, p0, p1, sc, secs, by = sys.argv[1:]
n = max(int(n), 1)
per = ", ".join(f"{k} {int(v) / n:.2f}" for k, v in (x.split("=") for x in by.split()))
print(f"{w} mode={mode}: {n / float(secs):.0f} commands/s, reactor busy {(int(b1) - int(b0)) / 1e3 / n:.2f} us/command, "
      f"process CPU {(int(p1) - int(p0)) * 1e4 / n:.2f} us/command, {int(sc) / n:.2f} syscalls/command"
      + (f" ({per})" if per else ""))
PY
    fi
done
echo "profiles and logs: $OUT" >&2
