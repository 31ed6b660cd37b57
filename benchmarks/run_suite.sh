#!/usr/bin/env bash
# The whole quality suite, one command, then its table:
#
#     bash benchmarks/run_suite.sh            # everything missing from benchmarks/results (resumes)
#     TASKS="digits diabetes" bash benchmarks/run_suite.sh    # some tasks only
#
# Offline, CPU, one torch thread per process (run one at a time on a 2-core machine). Budget on this project's
# machine, one core: the main profile (digits, gpt2, minilm: 3 seeds of every contender and the starting-lr sweep)
# about 85 minutes; each MiniLM task of the wider suite (plays, genres, plays-lora: 150 steps, about 4 minutes a
# run) about 100 minutes for its grids, the Trainer's defaults and the peers at 1 seed and GeN at 3, then about 30
# minutes for GeN's default and the best grid point on 5 seeds (the spread over seeds); code about 25
# minutes; diabetes about 3 minutes; the 3,000-step GPT-2 row about 95 minutes (8 to 10 minutes a run); about 10
# hours in all. Every run is kept in benchmarks/results/*.json as it finishes, and a rerun skips what is there. Each task
# also runs the earlier defaults (gen-adamw-averages-next: the one-step fast start; gen-adamw-next: one-step lines
# throughout) and the fast start on window lines alone (gen-adamw-windows) for the tables' comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
PY=${PYTHON:-python}
Q="$PY benchmarks/quality.py --threads 1 --resume"
PEERS="prodigy dadapt-adam schedulefree-adamw mechanic dog gen-optim"
TASKS=${TASKS:-"digits gpt2 minilm diabetes cancer plays genres plays-lora code gpt2-3000"}
main_done=0
for task in $TASKS; do
  case $task in
    digits | gpt2 | minilm)
      # The main profile: every contender on 3 seeds, and the starting-lr sweep.
      if [ $main_done = 0 ]; then
        main=$(for t in $TASKS; do case $t in digits | gpt2 | minilm) echo $t ;; esac; done)
        $Q --tasks $main
        $Q --tasks $main --no-robustness --families gen-adamw-next gen-adamw-averages-next gen-adamw-windows
        case " $main " in
          *" minilm "*)  # the fine-tune's spread: GeN's default and the best grid point on 5 seeds
            $Q --tasks minilm --no-robustness --seeds 5 --families gen-adamw
            $Q --tasks minilm --no-robustness --seeds 5 --families adamw-linear --grid minilm=0.0003
            ;;
        esac
        main_done=1
      fi
      ;;
    diabetes | cancer)
      # Cheap (about 1 s a run): every contender on 3 seeds, and the sweep.
      $Q --tasks $task --json benchmarks/results/suite_$task.json --markdown benchmarks/RESULTS_suite_$task.md
      $Q --tasks $task --no-robustness --families gen-adamw-next gen-adamw-same gen-adamw-averages-next \
        gen-adamw-windows gen-adamw-nodecay --json benchmarks/results/suite_$task.json --markdown benchmarks/RESULTS_suite_$task.md
      ;;
    plays | genres | plays-lora | code)
      json=benchmarks/results/suite_${task//-/_}.json
      md=benchmarks/RESULTS_suite_${task//-/_}.md
      $Q --tasks $task --no-robustness --seeds 1 --json $json --markdown $md \
        --families adamw-linear adamw-cosine-warmup trainer-default $PEERS
      $Q --tasks $task --no-robustness --seeds 3 --json $json --markdown $md --families gen-adamw gen-adamw-next gen-adamw-same \
        gen-adamw-averages-next gen-adamw-windows gen-adamw-nodecay
      if [ $task != code ]; then
        # The fine-tunes' spread: GeN's default and the best point of the 1-seed grids on 5 seeds each.
        best=$($PY -c "import json, sys; sys.path.insert(0, 'benchmarks'); from _report import summarize, GRID_FAMILIES
s = summarize(json.load(open('$json'))['tasks']['$task']['runs'])
name = min((n for n in s if s[n]['family'] in GRID_FAMILIES), key=lambda n: s[n]['eval_loss'])
print(s[name]['family'], name.split('@')[1])")
        set -- $best
        $Q --tasks $task --no-robustness --seeds 5 --json $json --markdown $md --families gen-adamw
        $Q --tasks $task --no-robustness --seeds 5 --json $json --markdown $md --families $1 --grid $task=$2
      fi
      ;;
    gpt2-3000)
      # The long horizon: 15 times the profile's steps, on the grid around where the best lr moved. GeN on 2 seeds,
      # the two best linear points on 2, the rest on 1.
      A="--json benchmarks/results/horizon_gpt2_a.json --markdown /tmp/horizon_gpt2_a.md --plots /tmp/horizon_plots"
      B="--json benchmarks/results/horizon_gpt2_b.json --markdown /tmp/horizon_gpt2_b.md --plots /tmp/horizon_plots"
      H="--tasks gpt2 --steps gpt2=3000 --no-robustness"
      $Q $H --seeds gpt2=2 --families gen-adamw gen-adamw-next gen-adamw-same gen-adamw-averages-next gen-adamw-windows $A
      $Q $H --seeds gpt2=1 --families trainer-default adamw-cosine-warmup --grid gpt2=1e-3 $A
      $Q $H --seeds gpt2=1 --families adamw-linear --grid gpt2=3e-4,1e-3,3e-3 $B
      $Q $H --seeds gpt2=2 --families adamw-linear --grid gpt2=1e-3,3e-3 $B
      # Schedule-Free, the best peer at 200 steps, Prodigy, the most used, and GeN without the decay shape
      $Q $H --seeds gpt2=1 --families schedulefree-adamw prodigy gen-adamw-nodecay $A
      ;;
    *)
      echo "unknown task $task: pass some of digits gpt2 minilm diabetes cancer plays genres plays-lora code gpt2-3000" >&2
      exit 2
      ;;
  esac
done
$PY benchmarks/suite_table.py --markdown benchmarks/RESULTS_suite.md
