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
# minutes for GeN's default and the best grid point on 5 seeds (the spread over seeds); fortunes (200 steps, 26 runs
# of about 4 minutes with two processes sharing the machine) about 100 minutes; glosses (held out, 150 steps, 31 runs
# of about 3 minutes) about 90 minutes; manpages (held out, 120 steps, 28 runs of 4 to 6 minutes with two or three
# processes sharing the machine) about 60 minutes on two processes; foldoc (held out, 150 steps, 34 runs of 3 to 4
# minutes with two processes sharing the machine) about 65 minutes on two processes; code about 25 minutes;
# diabetes, cancer and wine about 3 minutes each; the 3,000-step GPT-2 row about 140 minutes (8 to 10 minutes a
# run); the 3,000-step fine-tune (minilm-long) about 4 hours (20 to 30 minutes a run); about 19 hours in all. Every
# run is kept in benchmarks/results/*.json as it finishes, and a rerun skips what is there. Each task but fortunes
# and glosses also runs earlier defaults for the tables' comparison: the cosine shape on the same window lines
# (gen-adamw-cosine), and with it the one-step fast start (gen-adamw-averages-next), one-step lines throughout
# (gen-adamw-next) and the fast start on window lines alone (gen-adamw-windows).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
PY=${PYTHON:-python}
Q="$PY benchmarks/quality.py --threads 1 --resume"
PEERS="prodigy dadapt-adam schedulefree-adamw mechanic dog gen-optim"
TASKS=${TASKS:-"digits gpt2 minilm diabetes cancer wine plays genres plays-lora code fortunes glosses verbs docstrings manpages foldoc gpt2-3000 minilm-long"}
# five_seeds JSON MD TASK: GeN's default and the best grid point so far (as the suite's table picks it) on 5 seeds, for
# the spread of a fine-tune over seeds
five_seeds() {
  local best
  best=$($PY -c "import sys; from pathlib import Path; sys.path.insert(0, 'benchmarks'); from suite_table import load, row
print(row('$3', load([Path('$1')], '$3'), '')['best'])")
  $Q --tasks $3 --no-robustness --seeds 5 --json $1 --markdown $2 --families gen-adamw
  $Q --tasks $3 --no-robustness --seeds 5 --json $1 --markdown $2 --families ${best%@*} --grid $3=${best#*@}
}
# held_out_grids TASK: a held-out fine-tune's grids and the Trainer's defaults at 1 seed (linear beside GeN's default
# in results/suite_TASK.json; cosine with warmup in _warmup.json) and the peers at 1 seed (_peers.json): files of
# their own, so that two processes can run at once
held_out_grids() {
  $Q --tasks $1 --no-robustness --seeds 1 --json benchmarks/results/suite_$1.json \
    --markdown benchmarks/RESULTS_suite_$1.md --families adamw-linear trainer-default
  $Q --tasks $1 --no-robustness --seeds 1 --json benchmarks/results/suite_$1_warmup.json \
    --markdown /tmp/suite_$1_warmup.md --families adamw-cosine-warmup
  $Q --tasks $1 --no-robustness --seeds 1 --json benchmarks/results/suite_$1_peers.json \
    --markdown /tmp/suite_$1_peers.md --families $PEERS
}
# held_out_best TASK: the best grid point of both grids (as the suite's table picks it) on 5 seeds, in the file that
# holds it
held_out_best() {
  local best bjson=benchmarks/results/suite_$1.json
  best=$($PY -c "import sys; from pathlib import Path; sys.path.insert(0, 'benchmarks'); from suite_table import load, row
R = Path('benchmarks/results')
print(row('$1', load([R / 'suite_$1.json', R / 'suite_$1_warmup.json'], '$1'), '')['best'])")
  case $best in
    adamw-cosine-warmup*) bjson=benchmarks/results/suite_$1_warmup.json ;;
  esac
  $Q --tasks $1 --no-robustness --seeds 5 --json $bjson --markdown /tmp/suite_$1_best.md \
    --families ${best%@*} --grid $1=${best#*@}
}
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
          *" minilm "*) five_seeds benchmarks/results/quality.json benchmarks/RESULTS_quality.md minilm ;;
        esac
        main_done=1
      fi
      ;;
    diabetes | cancer | wine)
      # Cheap (about 1 s a run): every contender on 3 seeds, and the sweep.
      $Q --tasks $task --json benchmarks/results/suite_$task.json --markdown benchmarks/RESULTS_suite_$task.md
      $Q --tasks $task --no-robustness --families gen-adamw-next gen-adamw-same gen-adamw-averages-next \
        gen-adamw-windows gen-adamw-cosine --json benchmarks/results/suite_$task.json --markdown benchmarks/RESULTS_suite_$task.md
      ;;
    plays | genres | plays-lora | code)
      json=benchmarks/results/suite_${task//-/_}.json
      md=benchmarks/RESULTS_suite_${task//-/_}.md
      $Q --tasks $task --no-robustness --seeds 1 --json $json --markdown $md \
        --families adamw-linear adamw-cosine-warmup trainer-default $PEERS
      $Q --tasks $task --no-robustness --seeds 3 --json $json --markdown $md --families gen-adamw gen-adamw-next gen-adamw-same \
        gen-adamw-averages-next gen-adamw-windows gen-adamw-cosine
      if [ $task != code ]; then
        five_seeds $json $md $task
      fi
      ;;
    fortunes | glosses | verbs)
      # Fine-tunes added after a change of the defaults (fortunes before the fast start's charge, glosses after it,
      # verbs after every line was charged):
      # the grids, the Trainer's defaults and the peers at 1 seed; GeN's default and the best grid point on 5 seeds;
      # on glosses the two defaults before (only the fast start charged, and no charge) on 5 seeds too.
      json=benchmarks/results/suite_$task.json
      md=benchmarks/RESULTS_suite_$task.md
      $Q --tasks $task --no-robustness --seeds 1 --json $json --markdown $md \
        --families adamw-linear adamw-cosine-warmup trainer-default $PEERS
      five_seeds $json $md $task
      if [ $task = glosses ]; then
        $Q --tasks $task --no-robustness --seeds 5 --json $json --markdown $md --families gen-adamw-start-charged \
          gen-adamw-uncharged
      fi
      ;;
    docstrings)
      # Held out, added after the lines' unit became the default: the grids, the Trainer's defaults, the peers and
      # GeN's default on 3 seeds; GeN's default and the best grid point on 5.
      json=benchmarks/results/suite_docstrings.json
      md=benchmarks/RESULTS_suite_docstrings.md
      $Q --tasks $task --no-robustness --seeds 3 --json $json --markdown $md \
        --families adamw-linear adamw-cosine-warmup trainer-default $PEERS gen-adamw
      five_seeds $json $md $task
      ;;
    manpages)
      # Held out, added after the first settled lines were weighed by count: GeN's default on 3 seeds, the grids, the
      # Trainer's defaults and the peers at 1 seed; the default before (plain smoothing) on 3; GeN's default and the
      # best grid point on 5.
      json=benchmarks/results/suite_manpages.json
      md=benchmarks/RESULTS_suite_manpages.md
      $Q --tasks $task --no-robustness --seeds 3 --json $json --markdown $md --families gen-adamw
      held_out_grids $task
      $Q --tasks $task --no-robustness --seeds 3 --json benchmarks/results/suite_manpages_uncounted.json \
        --markdown /tmp/suite_manpages_uncounted.md --families gen-adamw-uncounted
      $Q --tasks $task --no-robustness --seeds 5 --json $json --markdown $md --families gen-adamw
      held_out_best $task
      ;;
    foldoc)
      # Held out, added after the Kalman gain became the default: GeN's default on 5 seeds; the grids, the Trainer's
      # defaults and the peers at 1 seed; the two defaults before (each settled line weighed with the same memory in
      # steps, on 5 seeds; and without the count too, on 3) in a file of their own; the best grid point on 5 seeds.
      $Q --tasks $task --no-robustness --seeds 5 --json benchmarks/results/suite_foldoc.json \
        --markdown benchmarks/RESULTS_suite_foldoc.md --families gen-adamw
      held_out_grids $task
      $Q --tasks $task --no-robustness --seeds 5 --json benchmarks/results/suite_foldoc_previous.json \
        --markdown /tmp/suite_foldoc_previous.md --families gen-adamw-no-kalman
      $Q --tasks $task --no-robustness --seeds 3 --json benchmarks/results/suite_foldoc_previous.json \
        --markdown /tmp/suite_foldoc_previous.md --families gen-adamw-uncounted
      held_out_best $task
      ;;
    gpt2-3000)
      # The long horizon: 15 times the profile's steps, on the grid around where the best lr moved. GeN on 2 seeds,
      # the two best linear points on 2, the rest on 1.
      A="--json benchmarks/results/horizon_gpt2_a.json --markdown /tmp/horizon_gpt2_a.md --plots /tmp/horizon_plots"
      B="--json benchmarks/results/horizon_gpt2_b.json --markdown /tmp/horizon_gpt2_b.md --plots /tmp/horizon_plots"
      H="--tasks gpt2 --steps gpt2=3000 --no-robustness"
      # GeN's default in the file the suite's table reads it from (count_j.json); the previous defaults' runs are in
      # horizon_gpt2_d.json (gen-adamw-level-unit, gen-adamw-start-charged and gen-adamw-uncharged),
      # horizon_gpt2_c.json (gen-adamw-keep) and pace_gpt2_3000.json (gen-adamw-uncounted)
      D="--json benchmarks/results/count_j.json --markdown /tmp/horizon_gpt2_d.md --plots /tmp/horizon_plots"
      $Q $H --seeds gpt2=2 --families gen-adamw $D
      $Q $H --seeds gpt2=2 --families gen-adamw-cosine gen-adamw-next gen-adamw-same gen-adamw-averages-next \
        gen-adamw-windows $A
      $Q $H --seeds gpt2=1 --families trainer-default adamw-cosine-warmup --grid gpt2=1e-3 $A
      $Q $H --seeds gpt2=1 --families adamw-linear --grid gpt2=3e-4,1e-3,3e-3 $B
      $Q $H --seeds gpt2=2 --families adamw-linear --grid gpt2=1e-3,3e-3 $B
      # every lr-free peer, 1 seed (two processes can run at once: they write different files)
      C="--json benchmarks/results/horizon_gpt2_c.json --markdown /tmp/horizon_gpt2_c.md --plots /tmp/horizon_plots"
      $Q $H --seeds gpt2=1 --families schedulefree-adamw prodigy dadapt-adam mechanic $A
      $Q $H --seeds gpt2=1 --families dog gen-optim $C
      ;;
    minilm-long)
      # The fine-tune's long horizon: 3,000 steps of batch 8, one seed (20 to 30 minutes a run). The grid around the
      # Trainer's default lr, and the lr-free peers that lead the short fine-tunes.
      L="--tasks minilm-long --no-robustness"
      A="--json benchmarks/results/horizon_minilm_a.json --markdown /tmp/horizon_minilm_a.md --plots /tmp/horizon_plots"
      B="--json benchmarks/results/horizon_minilm_b.json --markdown /tmp/horizon_minilm_b.md --plots /tmp/horizon_plots"
      C="--json benchmarks/results/horizon_minilm_c.json --markdown /tmp/horizon_minilm_c.md --plots /tmp/horizon_plots"
      D="--json benchmarks/results/horizon_minilm_d.json --markdown /tmp/horizon_minilm_d.md --plots /tmp/horizon_plots"
      # GeN's default in the file the suite's table reads it from (count_i.json; the previous defaults:
      # gen-adamw-level-unit, gen-adamw-start-charged and gen-adamw-uncharged in _g, gen-adamw-keep in _f,
      # gen-adamw-last in _a, gen-adamw-uncounted in pace_minilm_long.json)
      G="--json benchmarks/results/count_i.json --markdown /tmp/horizon_minilm_g.md --plots /tmp/horizon_plots"
      $Q $L --families gen-adamw $G
      $Q $L --families trainer-default adamw-linear --grid minilm-long=3e-5 $A
      $Q $L --families adamw-linear --grid minilm-long=1e-4,3e-4 $B
      $Q $L --families adamw-cosine-warmup --grid minilm-long=1e-4 $C
      # every lr-free peer (two processes can run at once: they write different files)
      E="--json benchmarks/results/horizon_minilm_e.json --markdown /tmp/horizon_minilm_e.md --plots /tmp/horizon_plots"
      $Q $L --families prodigy dadapt-adam schedulefree-adamw mechanic gen-optim $D
      $Q $L --families dog $E
      ;;
    *)
      echo "unknown task $task: pass some of digits gpt2 minilm diabetes cancer wine plays genres plays-lora code fortunes glosses verbs docstrings manpages foldoc gpt2-3000 minilm-long" >&2
      exit 2
      ;;
  esac
done
$PY benchmarks/suite_table.py --markdown benchmarks/RESULTS_suite.md
