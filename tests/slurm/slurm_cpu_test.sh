#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Brings up a private single-node Slurm on this machine (munged, slurmctld, slurmd, all with their
# own socket, ports, state and logs in a temporary directory), then runs
# scripts/slurm/cpu-4rank.sbatch on a tiny Qwen3-shaped model sharded TP2 x PP2 and checks that
# the job COMPLETED and that its results match single-process `df11-run generate` line for line.
# Every daemon it starts is stopped by PID on exit.
#
#   tests/slurm/slurm_cpu_test.sh BUILD_DIR        (BUILD_DIR/launcher holds df11 and df11-run)
#
# Needs root and the Debian packages slurm-wlm and munge; exits 77 (skipped) without them.
# Environment: LAUNCHER (mpirun | srun, passed to the template) [mpirun], JOB_TIMEOUT [120],
# KEEP_TMP=1 keeps the temporary directory.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$(cd "${1:?usage: slurm_cpu_test.sh BUILD_DIR}" && pwd)
DF11="$BUILD_DIR/launcher/df11"
RUN="$BUILD_DIR/launcher/df11-run"
LAUNCHER=${LAUNCHER:-mpirun}
JOB_TIMEOUT=${JOB_TIMEOUT:-120}

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (slurmctld/slurmd run as root here)"
for t in munged slurmctld slurmd sbatch scontrol sinfo scancel setpriv; do
  command -v "$t" > /dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin"
  command -v "$t" > /dev/null 2>&1 || skip "$t not installed (apt-get install slurm-wlm munge)"
done
id munge > /dev/null 2>&1 || skip "no munge user (apt-get install munge)"
if [ ! -x "$DF11" ] || [ ! -x "$RUN" ]; then echo "FAIL: no df11 / df11-run in $BUILD_DIR/launcher"; exit 1; fi
command -v mpirun > /dev/null || skip "mpirun not installed"

T0=$(date +%s%N)
elapsed() { local ms=$((($(date +%s%N) - T0) / 1000000)); printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100)); }
log() { echo "[slurm_cpu_test $(elapsed)] $*"; }

TMP=$(mktemp -d /tmp/df11-slurm-test.XXXXXX)
chmod 755 "$TMP"
PIDS=()
cleanup() {
  local rc=$?
  set +e
  if [ -n "${JOB_ID:-}" ] && [ "$rc" -ne 0 ]; then
    scontrol show job "$JOB_ID" 2> /dev/null | sed 's/^/  job| /'
    [ -f "$TMP/job.out" ] && sed 's/^/  job.out| /' "$TMP/job.out"
  fi
  if [ -n "${JOB_ID:-}" ] && [ "${job_state:-}" != "COMPLETED" ]; then
    # Cancel an unfinished job and give its steps a moment to go, before slurmd goes.
    scancel "$JOB_ID" 2> /dev/null
    for _ in $(seq 50); do
      squeue -h -j "$JOB_ID" -t all -o %T 2> /dev/null | grep -qE 'RUNNING|PENDING|COMPLETING|CONFIGURING' || break
      sleep 0.2
    done
  fi
  if [ "$rc" -ne 0 ]; then
    for f in slurmctld.log slurmd.log munge/munged.log; do
      [ -f "$TMP/$f" ] && { echo "---- tail $f"; tail -n 25 "$TMP/$f"; }
    done
  fi
  # Reverse start order: slurmd, slurmctld, munged. TERM, then KILL after 5 s.
  local i pid
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[$i]}
    kill -TERM "$pid" 2> /dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2> /dev/null
    wait "$pid" 2> /dev/null
  done
  if [ "${KEEP_TMP:-0}" = "1" ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
  log "done (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A TCP port nothing listens on, outside the kernel's ephemeral range (the outgoing connections of
# tests running beside this one take ports from there), probed with bash's /dev/tcp. A daemon may
# still lose its port to another process between the probe and its bind: start_slurm retries.
read -r EPHEMERAL_LO EPHEMERAL_HI < /proc/sys/net/ipv4/ip_local_port_range 2> /dev/null ||
  { EPHEMERAL_LO=32768; EPHEMERAL_HI=60999; }
if [ "$EPHEMERAL_LO" -gt 12000 ]; then PORT_LO=10000; PORT_SPAN=$((EPHEMERAL_LO - 10000))
else PORT_LO=$((EPHEMERAL_HI + 1)); PORT_SPAN=$((65536 - PORT_LO)); fi
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((PORT_LO + RANDOM % PORT_SPAN))
    if ! (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null; then echo "$p"; return; fi
  done
  echo "FAIL: no free port in $PORT_LO-$((PORT_LO + PORT_SPAN - 1))" >&2; return 1
}
HOST=$(hostname)

# ---- munged: the Debian key in /etc/munge (owned by munge), private socket/pid/log/seed.
mkdir -p "$TMP/munge"
chown munge:munge "$TMP/munge"
chmod 755 "$TMP/munge"   # munged wants the socket directory searchable by all
KEY=/etc/munge/munge.key
if [ ! -s "$KEY" ]; then
  KEY="$TMP/munge/munge.key"
  head -c 1024 /dev/urandom > "$KEY"
  chown munge:munge "$KEY"
  chmod 400 "$KEY"
fi
MUNGE_SOCKET="$TMP/munge/munge.socket"
setpriv --reuid=munge --regid=munge --init-groups munged -F --key-file="$KEY" --socket="$MUNGE_SOCKET" \
  --pid-file="$TMP/munge/munged.pid" --log-file="$TMP/munge/munged.log" \
  --seed-file="$TMP/munge/munged.seed" > "$TMP/munge/munged.stdout" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$MUNGE_SOCKET" ] && break; sleep 0.1; done
[ -S "$MUNGE_SOCKET" ] || { echo "FAIL: munged did not start"; exit 1; }
log "munged up (pid ${PIDS[-1]}, socket $MUNGE_SOCKET)"

# ---- slurm.conf: this host with 4 CPUs whatever it has (config_overrides: 4 ranks fit on 2 cores),
# private ports, state and logs, no cgroups (linuxproc, task/none).
mkdir -p "$TMP/state" "$TMP/spool"
export SLURM_CONF="$TMP/slurm.conf"
write_conf() {
cat > "$SLURM_CONF" << EOF
ClusterName=df11test
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/slurmctld.log
SlurmdLogFile=$TMP/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
InactiveLimit=0
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=df11 Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
EOF
}

# start_slurm: slurmctld and slurmd on fresh ports until the node is idle; a daemon that lost its
# port ("Address already in use") is stopped and both start again on other ports (3 tries).
node_state() { sinfo -h -n "$HOST" -o '%T' 2> /dev/null || true; }
start_slurm() {
  local try i
  for try in 1 2 3; do
    CTLD_PORT=$(free_port)
    SLURMD_PORT=$(free_port)
    while [ "$SLURMD_PORT" = "$CTLD_PORT" ]; do SLURMD_PORT=$(free_port); done
    write_conf
    : > "$TMP/slurmctld.log"; : > "$TMP/slurmd.log"
    slurmctld -D -c -f "$SLURM_CONF" > "$TMP/slurmctld.stdout" 2>&1 &
    PIDS+=($!)
    slurmd -D -f "$SLURM_CONF" -N "$HOST" > "$TMP/slurmd.stdout" 2>&1 &
    PIDS+=($!)
    log "slurmctld (pid ${PIDS[-2]}, port $CTLD_PORT) and slurmd (pid ${PIDS[-1]}, port $SLURMD_PORT) started"
    state=""
    for _ in $(seq 150); do
      state=$(node_state)
      case "$state" in idle*|mixed*|allocated*) return 0 ;; esac
      grep -q "Address already in use" "$TMP/slurmctld.log" "$TMP/slurmd.log" 2> /dev/null && break
      sleep 0.2
    done
    grep -q "Address already in use" "$TMP/slurmctld.log" "$TMP/slurmd.log" 2> /dev/null || return 1
    log "try $try: a daemon's port was taken meanwhile; restarting both on other ports"
    for i in -1 -2; do
      kill -TERM "${PIDS[$i]}" 2> /dev/null
      for _ in $(seq 50); do kill -0 "${PIDS[$i]}" 2> /dev/null || break; sleep 0.1; done
      kill -KILL "${PIDS[$i]}" 2> /dev/null; wait "${PIDS[$i]}" 2> /dev/null
    done
    PIDS=("${PIDS[@]:0:${#PIDS[@]}-2}")
  done
  return 1
}
start_slurm || { echo "FAIL: node not idle (state '$state')"; exit 1; }
log "node $HOST is $state"

# ---- tiny model, DF11, TP2 x PP2 shards, a small batch
"$DF11" -q make-tiny --arch qwen3 --layers 4 --hidden 64 --heads 4 --kv-heads 2 --head-dim 16 \
  --intermediate 128 --vocab-from "$BUILD_DIR/data/tokenizers/qwen3" --seed 3 "$TMP/bf16"
"$DF11" -q compress "$TMP/bf16" "$TMP/df11"
"$DF11" -q shard "$TMP/df11" "$TMP/tp2pp2" --tp 2 --pp 2
cat > "$TMP/batch.jsonl" << 'EOF'
{"custom_id": "a", "prompt": "Hello, my name is", "max_tokens": 8}
{"custom_id": "b", "prompt": "The capital of France", "max_tokens": 6}
{"custom_id": "c", "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0.8, "top_p": 0.95, "seed": 7}
{"custom_id": "d", "prompt": "1, 2, 3,", "max_tokens": 10, "stop": ["\n"]}
{"custom_id": "e", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
EOF
"$RUN" generate --model "$TMP/df11" --threads 2 --input "$TMP/batch.jsonl" \
  --output "$TMP/expected.jsonl" 2> "$TMP/single.log"
log "model made, sharded; single-process reference written"

# ---- the jobs
# submit EXPORTS OUT_FILE: submits cpu-4rank.sbatch, waits for it (JOB_TIMEOUT), wants COMPLETED.
submit() {
  JOB_ID=$(sbatch --parsable --chdir="$TMP" --output="$2" --export="$1" \
    "$SRC_DIR/scripts/slurm/cpu-4rank.sbatch")
  JOB_ID=${JOB_ID%%;*}
  log "submitted job $JOB_ID (launcher $LAUNCHER)"
  job_state=""
  deadline=$(($(date +%s) + JOB_TIMEOUT))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    job_state=$(scontrol show job "$JOB_ID" 2> /dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
    case "$job_state" in
      COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED) break ;;
    esac
    sleep 0.5
  done
  log "job $JOB_ID: ${job_state:-unknown}"
  if [ "$job_state" != "COMPLETED" ]; then
    [ -f "$2" ] && sed 's/^/  job.out| /' "$2"
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "FAIL: job $JOB_ID did not finish within $JOB_TIMEOUT s (state ${job_state:-unknown})"
    else
      echo "FAIL: job $JOB_ID ended $job_state (want COMPLETED)"
    fi
    exit 1
  fi
  sed 's/^/  job.out| /' "$2"
}

# check RESULTS WHAT: one result per input custom_id, no errors, the same lines as one process
# (in any order: results are written as requests finish).
ids() { sed -n 's/^{ *"custom_id": *"\([^"]*\)".*/\1/p' "$1" | sort | tr '\n' ' '; }
check() {
  local ids_in ids_out
  ids_in=$(ids "$TMP/batch.jsonl")
  ids_out=$(ids "$1")
  if [ "$ids_in" != "$ids_out" ] || [ "$(wc -l < "$1")" -ne "$(wc -l < "$TMP/batch.jsonl")" ]; then
    echo "FAIL ($2): want one result per custom_id [$ids_in], got [$ids_out]"
    exit 1
  fi
  if grep -q '"error"' "$1"; then
    echo "FAIL ($2): a result line carries an error:"; grep '"error"' "$1"; exit 1
  fi
  if ! cmp -s <(sort "$TMP/expected.jsonl") <(sort "$1"); then
    echo "FAIL ($2): the results differ from single-process df11-run generate:"
    diff <(sort "$TMP/expected.jsonl") <(sort "$1") || true
    exit 1
  fi
  log "PASS ($2): $(wc -l < "$1") results, the same as the single process"
}

cd "$TMP"
BASE="ALL,DF11_BIN=$BUILD_DIR/launcher,MODEL=$TMP/tp2pp2,INPUT=$TMP/batch.jsonl"
BASE+=",LAUNCHER=$LAUNCHER,THREADS=1"
submit "$BASE,OUTPUT=$TMP/results.jsonl" "$TMP/job.out"
check "$TMP/results.jsonl" "offline batch"

# Serving: the template starts df11-coordinator, submits the batch, the 4 ranks serve it.
if [[ "$("$RUN" serve --help 2> /dev/null)" == *--coordinator* ]]; then
  submit "$BASE,START_COORDINATOR=1,COORDINATOR_PORT=0,TOKEN_FILE=$TMP/token,COORDINATOR_DB=$TMP/coordinator.db,COORDINATOR_ADDR_FILE=$TMP/coordinator.addr,OUTPUT=$TMP/served.jsonl" \
    "$TMP/job-serve.out"
  # Batch-output lines (keys sorted): {"custom_id",...,"response":{"body":RESULT,"status_code"}}.
  sed 's/^.*"response":{"body":\(.*\),"status_code":[0-9]*}}$/\1/' "$TMP/served.jsonl" \
    > "$TMP/served-bodies.jsonl"
  check "$TMP/served-bodies.jsonl" "coordinator + df11-run serve"
else
  log "df11-run has no serve subcommand: the coordinator mode is not tested"
fi
