#!/usr/bin/env bash
# Continued pretraining on a SLURM cluster (or on this machine without SLURM).
#
#   sbatch pretrain/launch.sh configs/llama2-7b.yaml [--set KEY=VALUE ...]     # from the repo root
#   sbatch --nodes=4 --time=48:00:00 pretrain/launch.sh configs/llama2-7b.yaml
#   bash pretrain/launch.sh configs/demo.yaml                                   # local: 2 CPU procs
#
# Every #SBATCH default below is overridable on the sbatch command line or by sbatch's own
# environment variables (SBATCH_PARTITION, SBATCH_TIMELIMIT, SBATCH_GRES, SBATCH_SIGNAL,
# SBATCH_OUTPUT, SBATCH_JOB_NAME, SBATCH_ACCOUNT, ...). The launcher itself reads:
#   NPROC_PER_NODE   processes per node (default: GPUs on the node, 8 on A100 nodes; 2 locally)
#   MASTER_PORT      c10d rendezvous port on the first node (default 29500)
#   KOCPT_PYTHON     the Python with kocpt installed (default: REPO/.venv/bin/python if it exists,
#                    else python3 on PATH: the activated environment, which sbatch propagates)
#   KOCPT_REPO       the repository (default: the submit directory, else this script's parent)
#   KOCPT_STOP_FILE  file the trainer polls for "checkpoint and exit" (default under the submit dir)
#   OMP_NUM_THREADS  threads per process (default: KOCPT_CPUS / processes per node)
#   KOCPT_CPUS       CPUs this launch may use on a node (default: the allocation's, or all of this machine's;
#                    kocpt compare gives each of its concurrent arms a share)
#
# What happens: one `torchrun` per node (srun), rendezvous over c10d at the first node's NodeAddr
# (from `scontrol show node`, which works where node names do not resolve). The trainer resumes
# by itself from `<checkpoint.dir>/latest`. SLURM sends USR1 to this batch shell 300 s before
# the time limit (--signal=B:USR1@300): the trap asks the trainer to checkpoint at the next step
# boundary (through the stop file, which reaches every node), waits for it to exit cleanly,
# and requeues the job, which then resumes from that checkpoint. Any failure exits non-zero.
#
#SBATCH --job-name=kocpt-pretrain
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:8
#SBATCH --exclusive
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out

set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
    [[ $# -lt 1 ]] && exit 2 || exit 0
fi
CONFIG="$1"
if [[ -n "${KOCPT_CPUS:-}" && ! "$KOCPT_CPUS" =~ ^[1-9][0-9]*$ ]]; then
    echo "launch.sh: error: KOCPT_CPUS must be a positive whole number of CPUs, got '$KOCPT_CPUS'" >&2
    exit 2
fi
shift

# Under sbatch this script runs from SLURM's spool directory: find the repo from the submit dir.
if [[ -n "${KOCPT_REPO:-}" ]]; then
    REPO="$KOCPT_REPO"
elif [[ -n "${SLURM_SUBMIT_DIR:-}" && -f "${SLURM_SUBMIT_DIR}/pretrain/train.py" ]]; then
    REPO="$SLURM_SUBMIT_DIR"
else
    REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fi
if [[ ! -f "$REPO/pretrain/train.py" ]]; then
    echo "launch.sh: error: cannot find pretrain/train.py under $REPO (set KOCPT_REPO)" >&2
    exit 2
fi
if [[ -n "${KOCPT_PYTHON:-}" ]]; then
    PYTHON="$KOCPT_PYTHON"
elif [[ -x "$REPO/.venv/bin/python" ]]; then
    PYTHON="$REPO/.venv/bin/python"
else
    PYTHON="$(command -v python3 || true)"
fi
# The processes run `python -m pretrain.train` from the submit directory (relative paths in the config
# and overrides stay the user's): this repository comes first on their module path.
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
# Before any process starts: this Python must import the project, torch and Megatron-Core.
if [[ -z "$PYTHON" ]] || ! "$PYTHON" -c "import mcore_llama, pretrain.train, torch, megatron.core" >/dev/null 2>&1; then
    echo "launch.sh: error: ${PYTHON:-python3 (not on PATH)} cannot import kocpt, torch and megatron.core;" \
         "activate the environment where kocpt is installed, or set KOCPT_PYTHON=/path/to/python" >&2
    exit 2
fi
TORCHRUN=("$PYTHON" -m torch.distributed.run)
if [[ ! -f "$CONFIG" ]]; then
    echo "launch.sh: error: $CONFIG: no such config file" >&2
    exit 2
fi

JOB_ID="${SLURM_JOB_ID:-local-$$}"
export KOCPT_STOP_FILE="${KOCPT_STOP_FILE:-${SLURM_SUBMIT_DIR:-$REPO}/.kocpt-stop-$JOB_ID}"
rm -f "$KOCPT_STOP_FILE"

# A100 clusters: fail fast on NCCL errors instead of hanging until the time limit; one CUDA
# connection so Megatron's TP communication overlaps in order; avoid record_stream overhead.
export TORCH_NCCL_ASYNC_ERROR_HANDLING="${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}"
export CUDA_DEVICE_MAX_CONNECTIONS="${CUDA_DEVICE_MAX_CONNECTIONS:-1}"
export TORCH_NCCL_AVOID_RECORD_STREAMS="${TORCH_NCCL_AVOID_RECORD_STREAMS:-1}"
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
export NCCL_IB_TIMEOUT="${NCCL_IB_TIMEOUT:-22}"
export PYTHONUNBUFFERED=1

STOP_REASON=""
request_stop() {
    STOP_REASON="$1"
    echo "launch.sh: $1 received: asking the trainer to checkpoint and exit ($KOCPT_STOP_FILE)"
    touch "$KOCPT_STOP_FILE"
}
trap 'request_stop USR1' USR1
trap 'request_stop TERM' TERM

run_and_wait() {  # run "$@" in the background; wait through trapped signals; return its status
    "$@" &
    local pid=$! rc=0
    while true; do
        if wait "$pid"; then rc=0; else rc=$?; fi
        kill -0 "$pid" 2>/dev/null || break  # still running: wait was interrupted by a trap
    done
    return "$rc"
}

check_config() {  # world size, overrides: one clear line and exit 2 before any process starts
    local world="$1"
    shift
    "$PYTHON" -m pretrain.train "$CONFIG" "$@" --check --world-size "$world" >/dev/null || exit 2
}

if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    NNODES="${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}"
    HEAD_NODE="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
    MASTER_ADDR="$(scontrol show node "$HEAD_NODE" | sed -n 's/.*NodeAddr=\([^ ]*\).*/\1/p' | head -n 1)"
    MASTER_ADDR="${MASTER_ADDR:-$HEAD_NODE}"
    MASTER_PORT="${MASTER_PORT:-29500}"
    GPUS="${SLURM_GPUS_ON_NODE:-}"
    NPROC_PER_NODE="${NPROC_PER_NODE:-${GPUS:-8}}"
    CPUS="${KOCPT_CPUS:-${SLURM_CPUS_ON_NODE:-$(nproc)}}"
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( CPUS / NPROC_PER_NODE > 0 ? CPUS / NPROC_PER_NODE : 1 ))}"
    check_config "$(( NNODES * NPROC_PER_NODE ))" "$@"
    echo "launch.sh: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $NNODES node(s) [$SLURM_JOB_NODELIST]," \
         "$NPROC_PER_NODE proc/node, rendezvous $MASTER_ADDR:$MASTER_PORT, config $CONFIG"
    run_and_wait srun --nodes="$NNODES" --ntasks-per-node=1 --kill-on-bad-exit=1 \
        "${TORCHRUN[@]}" \
        --nnodes="$NNODES" --nproc_per_node="$NPROC_PER_NODE" \
        --rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv_id="kocpt-$SLURM_JOB_ID" \
        --max_restarts=0 \
        --module pretrain.train "$CONFIG" "$@" && rc=0 || rc=$?
else
    NPROC_PER_NODE="${NPROC_PER_NODE:-2}"
    CPUS="${KOCPT_CPUS:-$(nproc)}"
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( CPUS / NPROC_PER_NODE > 0 ? CPUS / NPROC_PER_NODE : 1 ))}"
    check_config "$NPROC_PER_NODE" "$@"
    echo "launch.sh: no SLURM job: running $NPROC_PER_NODE process(es) on this machine, config $CONFIG"
    run_and_wait "${TORCHRUN[@]}" --standalone --nnodes=1 --nproc_per_node="$NPROC_PER_NODE" \
        --module pretrain.train "$CONFIG" "$@" && rc=0 || rc=$?
fi
rm -f "$KOCPT_STOP_FILE"

if [[ $rc -ne 0 ]]; then
    echo "launch.sh: training failed with exit code $rc" >&2
    exit "$rc"
fi
if [[ "$STOP_REASON" == "USR1" && -n "${SLURM_JOB_ID:-}" ]]; then
    echo "launch.sh: checkpoint written; requeueing job $SLURM_JOB_ID to resume"
    scontrol requeue "$SLURM_JOB_ID"
fi
echo "launch.sh: done"
