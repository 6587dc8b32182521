#!/usr/bin/env bash
# One batch on the H200 (device tool): the test suite on CUDA, the default and upstream sweeps,
# and the benchmark. Everything goes to $OUT/results.tar.gz (reports/ paths and logs/ inside: the
# device returns at most 8 files), beside $OUT/steps.txt and $OUT/gpu.txt.
# Usage: bash scripts/h200_run.sh [tests] [files] [kernels] [default] [upstream] [candidates] [testing] [fuzz] [fuzzmodels] [fuzztiles] [impact]
#        [bench] [ncu] [ncurow] [mutants] [probegrouped] [probefused] [ab] [tmaring] [ncuring] [peers] [properties] [multigpu] [split] [smallvec]
#        [launch] [ablate]
# ablate: scripts/ablate_kernels.py's trees (va/base and one a stage taken out) timed in turns by the ab step, twice:
# route_kernel's ablations by probe_fused at the table's tile (ABLATE_ROUTE_ARGS, default Gemma4 bf16 and fp32 at
# T = 250000) into $LOGS/ablate-route/, the grouped kernel's by probe_grouped (ABLATE_GROUPED_ARGS, default DeepSeek-V3
# bf16's table launch alone at T = 250000) into $LOGS/ablate-grouped/: what each stage costs in time (NOTES,
# "Twenty-ninth round"). ABLATE_KERNELS (default "route grouped") picks the halves: each fits one call (the grouped
# half took 83 s on an H100; at 65536 too and every probe configuration the two took ~16 minutes there).
# ABLATE_ROUTE_TREES: the route half's trees (default its three ablations and the exact variant
# route-eager-dropped-bits, the default before 2026-12-07; scripts/ablate_kernels.py names them).
# ABLATE_GROUPED_TREES: the grouped half's (default the sigmoid's, the flags' and the list passes' ablations; the key
# stage's, timed in the thirty-first round and since built into FIXED_REF, were removed: `git show
# 9b0be40:scripts/ablate_kernels.py`).
# ONLY_GPU=h200 (a card's tag, as the folders') ends the call at once, before any step, on any other card; with
# OTHER_STEPS it runs those steps there instead (e.g. `ONLY_GPU=h200 OTHER_STEPS=tests bash scripts/h200_run.sh bench`:
# the H200's bench, or the CUDA suite on whichever other card came; on 2026-12-07 twelve calls got no machine, then
# an H100 came).
# ab: two kernel trees timed in turns in one call (base, new, base, new ...: AB_REPS rounds, default 2), the base tree's
# parity/ first on the path (AB_BASE=va/<dir>, made by `git archive <ref> parity | tar -x -C va/<dir>`; va/ travels
# untracked), the new side the working tree's or AB_NEW's (another such tree: two commits compared without checking out;
# several, space-separated, each timed in the same turns and summarised against the base in logs/ab/summary-<folder>.json),
# by AB_PROBE (default benchmarks.probe_grouped) with AB_ARGS, then benchmarks.ab_summary (AB_IGNORE: fields left out of
# the configurations, e.g. pair_test; AB_WHERE, e.g.
# "--where table=True") into logs/ab/summary.json: per configuration both sides' medians, the change, and the oracle.
# ncu: Nsight Compute over benchmarks/profile_ncu.py (NCU_ARGS), one launch a model; counters and per-instruction stall samples as CSV in logs/,
# and their summary (benchmarks/ncu_summary.py) in logs/ncu-summary.json and at the end of logs/ncu.log.
# ncurow: one bench row's program under Nsight Compute (NCU_ROW_ARGS for benchmarks/profile_ncu: by default DeepSeek-V3's
# near row of the T=64 batch, 132 copies, one a program), samples every 32 cycles, summed per source line by
# benchmarks/ncu_lines (NCU_LINES_ARGS: the same kernel configuration) into logs/ncu-row-lines.json and logs/ncu-row.log.
# launch: benchmarks/probe_launch (LAUNCH_ARGS): the graph replay's per-call floor (a program a row doing nothing; reading
# its row, reducing it, storing K outputs) beside the fused kernels of Gemma4 and DeepSeek-V3 at T = 1..2048, into logs/launch.json.
# fuzztiles: `parity fuzz --every-tile` over every model and dtype: launches of every size the launch tables tell apart
# (up to 2**20 rows), every row against the oracle: every tile the kernels can take on this GPU and Triton (a reduction
# over the wrong lanes lived in one tile's layout once: reports/bench/NOTES.md, "Eighteenth round").
# mutants: scripts/mutate_kernels.py --gpu over MUTANTS_ONLY (default: the three that only the GPU can show) into
# reports/h200-kernel-mutants.
# tmaring: the TMA-ring variant's CUDA tests (tests/test_bench_variants.py -k v8), then benchmarks/probe_tma_ring
# (PROBE_RING_ARGS; default Gemma4's bf16 and fp32 and GPT-OSS's shapes at T=250000 and 65536) into logs/probe-tma-ring.json.
# ncuring: Nsight Compute (as ncu) over the table's launch and the ring's (NCU_RING_CONFIGS, STAGES:CAP:PER_SM) at
# Gemma4's bf16 and fp32 shapes, T=250000, into $LOGS/ring/ (ncu-summary.json there).
# peers needs the git-ignored peers/ directory (python3 scripts/fetch_peers.py; device tool: carry ["peers"]): the engines'
# kernels loaded (benchmarks/peers.py), a smoke sweep per family with the peers that compute its first model
# (PEERS_SWEEPS, default PEERS_BY_FAMILY; reports/h200-peers/<family>/) and the bench of fused and every peer over
# every family (PEERS_NO_BENCH=1 leaves it out; reports/h200-peers/bench/).
# Limits: TESTS_LIMIT (s, default 540), PROPS_LIMIT (s, default 260), LONG_FACTOR (default 5), FUZZ_LIMIT,
# FUZZ_ROWS (rows per family and dtype, default 10^8), FUZZ_MODEL_ROWS (per model and dtype, default 10^7).
# Probes and bench take their arguments from PROBE_GROUPED_ARGS / PROBE_TS, PROBE_FUSED_ARGS, BENCH_ARGS and
# BENCH_OUT (a partial bench, e.g. BENCH_ARGS="--family mixtral" BENCH_OUT=reports/bench/h200-partial).
# bench: logs/bench-diff.md (and .png) is `parity diff` of the bench this tree held at BENCH_OUT before the run against the new one.
# PARITY_TREE=DIR puts DIR first on PYTHONPATH (with PYTHONSAFEPATH, checked: scripts/with_tree.sh says why): another
# tree's parity/ (e.g. `git archive <sha> parity | tar -x -C va/t<sha>`,
# carried) under this tree's benchmarks and scripts, for A/B calls of two kernels in one device call.
# files: the test files named in TEST_FILES (FILES_LIMIT s, default 200) into logs/pytest_files.log, e.g. the
# tests mended on the CPU since the suite last ran on a GPU, before a bench in the same call.
# tests: -v, so that each test's result is a line of its own as it finishes: at b84a360 the time limit's interrupt
# ended pytest in an INTERNALERROR before its summary, and the log held "2 failed" without their names.
# TESTS_SHARD=i/n runs the i-th of n disjoint parts of the suite (PARITY_SHARD, tests/conftest.py):
# at c2cb7bf the whole suite did not fit one 600 s device call (8 of 630 tests unfinished); at
# eb30433, on a fresh machine, its halves took 79 s and 97 s (reports/h200-reliability).
# Output folders are named by the card (reports/h200-*, reports/h100-*, reports/bench/<card>; GPU_TAG overrides):
# a peers run on an H100 once landed in reports/h200-peers.
# The device's copy of the tree reports the last landed commit as HEAD: pass the commit you ran,
# PARITY_GIT_SHA=<the sha, written out here: git rev-parse on the device gives the landed one> bash scripts/h200_run.sh ..., or the reports name the wrong one
# (reports/h200-user was re-labelled by hand for this reason).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=${PARITY_TREE:+$PARITY_TREE:}$PWD
source "$(dirname "$0")/with_tree.sh"   # with_tree, require_tree: another tree's parity/ really first
if [ -n "${PARITY_TREE:-}" ]; then
  export PYTHONSAFEPATH=1   # else `python3 -m` imports this checkout's parity/ before PARITY_TREE's
  require_tree "$PARITY_TREE" || { echo "PARITY_TREE=$PARITY_TREE: nothing run" >&2; exit 2; }
fi
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
LOGS=${LOGS_DIR:-logs}; mkdir -p "$LOGS"   # LOGS_DIR: a second call in one device command keeps the first's logs
steps=${*:-tests default upstream bench}
PEERS_BY_FAMILY="gemma4:sglang_topk_softmax,vllm_topk_softmax mixtral:sglang_topk_softmax,vllm_topk_softmax
  gpt_oss:triton_kernels_topk,sglang_topk_softmax,vllm_topk_softmax deepseek_v3:sglang_moe_fused_gate,vllm_grouped_topk
  llama4:sglang_topk_sigmoid,vllm_topk_sigmoid"
PEERS_ALL="triton_kernels_topk sglang_topk_softmax sglang_topk_sigmoid sglang_moe_fused_gate vllm_topk_softmax vllm_topk_sigmoid vllm_grouped_topk"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
GPU=${GPU_TAG:-$(grep -oiE 'h[0-9]{3}' "$OUT/gpu.txt" | head -1 | tr 'A-Z' 'a-z')}   # the card just listed names the folders
GPU=${GPU:-gpu}
if [ -n "${ONLY_GPU:-}" ] && [ "$GPU" != "$ONLY_GPU" ]; then   # a question only that card answers: the rest of the call unspent
  if [ -z "${OTHER_STEPS:-}" ]; then
    echo "ONLY_GPU=$ONLY_GPU, but this card is $GPU: nothing run" | tee "$OUT/steps.txt"; exit 3
  fi
  steps=$OTHER_STEPS   # or spent on what any card answers
  echo "ONLY_GPU=$ONLY_GPU, but this card is $GPU: OTHER_STEPS instead ($steps)" | tee "$OUT/steps.txt"
fi
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)' | tee -a "$OUT/gpu.txt"
ab_side() {   # the ab step's name for a tree: base, new where one tree is timed against it, else the tree's folder name
  if [ "$1" = "${AB_BASE:-}" ]; then echo base; elif [ $(echo $2 | wc -w) = 1 ]; then echo new; else basename "$1"; fi
}
ab_turns() {   # the ab step into $1/ab/ and $1/ab.log: AB_BASE and AB_NEW timed in turns by AB_PROBE, then summarised
  local dir=$1
  if [ ! -d "${AB_BASE:-/nonexistent}/parity" ]; then   # else the "base" runs would time this tree twice
    echo "ab: AB_BASE=${AB_BASE:-(unset)} holds no parity/: make it with git archive (see ab above) and carry it" \
      | tee "$dir/ab.log"; return
  fi
  { mkdir -p "$dir/ab"; news=${AB_NEW:-.}; for i in $(seq ${AB_REPS:-2}); do for tree in "$AB_BASE" $news; do
      side=$(ab_side "$tree" "$news")
      run=$([ "$tree" = . ] || echo "with_tree $tree")   # that tree's parity/ first (with_tree.sh); "." the working tree's
      echo "$side-r$i imports parity from $($run parity_imported)"
      $run timeout ${PROBE_LIMIT:-240} python3 -m ${AB_PROBE:-benchmarks.probe_grouped} \
        --out "$dir/ab/$side-r$i.json" ${AB_ARGS:---models deepseek-v3 --dtypes bf16 --bench-inputs 1 8 64 512} \
        > "$dir/ab/$side-r$i.log" 2>&1; done; done
    for tree in $news; do side=$(ab_side "$tree" "$news")
      echo "== $side ($tree) against base ($AB_BASE)"
      python3 -m benchmarks.ab_summary --base "$dir"/ab/base-r*.json --new "$dir"/ab/$side-r*.json ${AB_WHERE:-} \
        ${AB_IGNORE:+$(for f in $AB_IGNORE; do echo --ignore $f; done)} \
        --out "$dir/ab/summary$([ $side = new ] || echo "-$side").json"; done; } > "$dir/ab.log" 2>&1; cat "$dir/ab.log"
}
for step in $steps; do
  start=$(date +%s)
  case $step in
    tests) PARITY_SHARD=${TESTS_SHARD:-} timeout -s INT ${TESTS_LIMIT:-540} \
        python3 -m pytest -n 16 -v -rA -p no:cacheprovider --durations=25 tests > "$LOGS/pytest_cuda.log" 2>&1 ;;
    files) if [ -z "${TEST_FILES:-}" ]; then echo "files: TEST_FILES names no test file" | tee "$LOGS/pytest_files.log"; false
        else timeout ${FILES_LIMIT:-200} python3 -m pytest -n 16 -q -rA -p no:cacheprovider --durations=10 \
          $TEST_FILES > "$LOGS/pytest_files.log" 2>&1; fi ;;
    kernels) timeout ${KERNELS_LIMIT:-300} python3 -m pytest -n 16 -q -rA -p no:cacheprovider --durations=10 tests/test_fused.py \
        tests/test_fused_families.py tests/test_fused_grouped.py tests/test_bench.py tests/test_compile.py tests/test_kernel_parts.py \
        tests/test_invariance.py tests/test_word_maxima.py tests/test_fp32_unchecked.py tests/test_word_loads.py \
        tests/test_bias_in_ref.py \
        > "$LOGS/pytest_kernels.log" 2>&1 ;;
    ablate) halves=" ${ABLATE_KERNELS:-route grouped} "
      python3 scripts/ablate_kernels.py --dir va > "$LOGS/ablate.log" 2>&1 && {
        if [[ $halves == *" route "* ]]; then mkdir -p "$LOGS/ablate-route"
          AB_BASE=va/base AB_PROBE=benchmarks.probe_fused AB_NEW="${ABLATE_ROUTE_TREES:-va/ablate-route-no-rounds \
            va/ablate-route-no-second-stage va/ablate-route-no-loss-check va/variant-route-eager-dropped-bits}" \
            AB_ARGS="${ABLATE_ROUTE_ARGS:---shapes 128:bf16:8,128:fp32:8 --configs table 250000}" \
            ab_turns "$LOGS/ablate-route"; fi
        if [[ $halves == *" grouped "* ]]; then mkdir -p "$LOGS/ablate-grouped"
          AB_BASE=va/base AB_PROBE=benchmarks.probe_grouped \
            AB_NEW="${ABLATE_GROUPED_TREES:-va/ablate-grouped-no-sigmoid va/ablate-grouped-no-flags \
              va/ablate-grouped-no-list-passes}" \
            AB_ARGS="${ABLATE_GROUPED_ARGS:---models deepseek-v3 --dtypes bf16 --bench-inputs --table-only 250000}" \
            ab_turns "$LOGS/ablate-grouped"; fi; } >> "$LOGS/ablate.log" 2>&1 ;;
    probegrouped) timeout ${PROBE_LIMIT:-240} python3 -m benchmarks.probe_grouped --out "$LOGS/probe-grouped.json" \
        ${PROBE_GROUPED_ARGS:-} ${PROBE_TS:-250000 2048 64} > "$LOGS/probe-grouped.log" 2>&1 ;;
    ab) ab_turns "$LOGS" ;;
    probefused) timeout ${PROBE_LIMIT:-240} python3 -m benchmarks.probe_fused --out "$LOGS/probe-fused.json" \
        ${PROBE_FUSED_ARGS:---shapes 60:bf16:4:all,60:bf16:4:k --configs rounds,small 250000 2048 512 8} > "$LOGS/probe-fused.log" 2>&1 ;;
    tmaring) { timeout 150 python3 -m pytest -n 8 -q -rA -p no:cacheprovider -k v8 tests/test_bench_variants.py
        timeout ${RING_LIMIT:-420} python3 -m benchmarks.probe_tma_ring --out "$LOGS/probe-tma-ring.json" \
          ${PROBE_RING_ARGS:---shapes 128:bf16:8,128:fp32:8,128:bf16:4 250000 65536}; } > "$LOGS/tma-ring.log" 2>&1 ;;
    peers) { python3 -m benchmarks.peers
        for spec in ${PEERS_SWEEPS:-$PEERS_BY_FAMILY}; do
          timeout ${PEERS_SWEEP_LIMIT:-150} python3 -m parity.cli sweep --grid smoke --family "${spec%%:*}" \
            $(echo "${spec#*:}" | tr , '\n' | sed 's/^/--candidate benchmarks.peers:/') \
            --out "reports/$GPU-peers/${spec%%:*}" --no-progress
        done
        [ -n "${PEERS_NO_BENCH:-}" ] || timeout ${PEERS_BENCH_LIMIT:-280} python3 -m parity.cli bench --impl fused \
          $(for c in $PEERS_ALL; do echo --candidate benchmarks.peers:$c; done) --out reports/$GPU-peers/bench --no-progress; } > "$LOGS/peers.log" 2>&1 ;;
    default) python3 -m parity.cli sweep --grid default --out reports/$GPU --no-progress > "$LOGS/sweep_default.log" 2>&1 ;;
    upstream) python3 -m parity.cli sweep --grid upstream --out reports/$GPU-upstream --no-progress > "$LOGS/sweep_upstream.log" 2>&1 ;;
    candidates) PYTHONPATH=$PWD:$PWD/tests timeout ${CANDIDATES_LIMIT:-240} python3 -m parity.cli sweep --grid smoke --out reports/$GPU-candidates --no-progress \
        $(for c in fp32_topk_softmax higher_id_ties nan_ranked_lowest one_expert_off scale_ignored_for_expert_0 near_tie_flip softmax_in_input_dtype batch_size_dispatch; \
          do echo --candidate external_candidates:$c; done) > "$LOGS/sweep_candidates.log" 2>&1 ;;
    testing) { timeout 200 python3 -m pytest -n 8 -q -rA -p no:cacheprovider tests/test_testing.py tests/test_outside.py
        python3 -m parity.cli tolerances reports/$GPU --emit pytest --out "$LOGS/test_emitted_fused.py"
        timeout 150 python3 -m pytest -n 8 -q -p no:cacheprovider "$LOGS/test_emitted_fused.py"
        python3 -m parity.cli sweep --grid-file examples/my_grid.toml --candidate examples.sglang_order:gemma4_routing \
          --signature sglang --out reports/$GPU-user --no-progress; } > "$LOGS/testing.log" 2>&1 ;;
    fuzz) { timeout 150 python3 -m pytest -n 8 -q -rA -p no:cacheprovider tests/test_fuzz.py tests/test_invariance.py tests/test_impact.py
        timeout ${FUZZ_LIMIT:-330} python3 -m parity.cli fuzz --rows ${FUZZ_ROWS:-100000000} --dtype bfloat16,float32,float16 \
          --out reports/$GPU-reliability/fuzz --no-progress; } > "$LOGS/fuzz.log" 2>&1 ;;
    fuzztiles) timeout ${FUZZ_LIMIT:-400} python3 -m parity.cli fuzz --every-tile --rows 1 --model all \
          --dtype bfloat16,float32,float16 --out reports/$GPU-reliability/fuzz-tiles --no-progress > "$LOGS/fuzz-tiles.log" 2>&1 ;;
    fuzzmodels) timeout ${FUZZ_LIMIT:-200} python3 -m parity.cli fuzz --rows ${FUZZ_MODEL_ROWS:-10000000} --model all \
          --dtype bfloat16,float32,float16 --out reports/$GPU-reliability/fuzz-models --no-progress > "$LOGS/fuzz-models.log" 2>&1 ;;
    impact) timeout ${IMPACT_LIMIT:-240} python3 -m parity.cli impact --T ${IMPACT_T:-250000} \
          --family gemma4,mixtral,gpt_oss,deepseek_v3,llama4 --tiny-model 32 --out reports/$GPU-impact --no-progress > "$LOGS/impact.log" 2>&1
        timeout 120 python3 -m parity.cli impact --T 65536 --layer hf --hidden 512 --intermediate 256 \
          --family gemma4,mixtral,gpt_oss,deepseek_v3,llama4 --out reports/$GPU-impact/hf --no-progress >> "$LOGS/impact.log" 2>&1 ;;
    bench) bench_out=${BENCH_OUT:-reports/bench/$GPU}
        [ -f "$bench_out/bench.json" ] && cp "$bench_out/bench.json" "$LOGS/bench-before.json"
        timeout ${BENCH_LIMIT:-540} python3 -m parity.cli bench --out "$bench_out" ${BENCH_ARGS:-} \
        --no-progress > "$LOGS/bench.log" 2>&1
        # the table against the bench this tree held before (times judged only on the same card and versions)
        if [ -f "$LOGS/bench-before.json" ] && [ -f "$bench_out/bench.json" ]; then
          python3 -m parity.cli diff "$LOGS/bench-before.json" "$bench_out" --plot "$LOGS/bench-diff.png" \
            > "$LOGS/bench-diff.md" 2>&1
        fi ;;
    multigpu) PARITY_GRID=default PARITY_SWEEP_OUT=reports/${GPU}x2-pytest \
        python3 -m pytest -n "$(python3 -c 'import torch; print(max(2, torch.cuda.device_count()))')" -q -p no:cacheprovider tests/sweep 2>&1 | tail -8 > "$LOGS/multigpu.log" ;;
    properties) PARITY_HYPOTHESIS_PROFILE=long PARITY_HYPOTHESIS_LONG_FACTOR=${LONG_FACTOR:-5} \
        PARITY_RELIABILITY_OUT=reports/$GPU-reliability timeout -s INT ${PROPS_LIMIT:-260} \
        python3 -m pytest -n 14 -q -rA -p no:cacheprovider tests/test_properties.py tests/test_special_semantics.py > "$LOGS/properties.log" 2>&1 ;;
    ncu) { timeout ${NCU_LIMIT:-300} ncu --clock-control none --profile-from-start off --set full --import-source yes \
          -k regex:'route_kernel|grouped_kernel' -f -o "$LOGS/ncu" python3 -m benchmarks.profile_ncu ${NCU_ARGS:-}
        ncu -i "$LOGS/ncu.ncu-rep" --page details --csv > "$LOGS/ncu-details.csv"
        ncu -i "$LOGS/ncu.ncu-rep" --page source --csv --print-source sass > "$LOGS/ncu-source.csv"
        ncu -i "$LOGS/ncu.ncu-rep" --page raw --csv > "$LOGS/ncu-raw.csv"
        python3 -m benchmarks.ncu_summary "$LOGS" --git "${PARITY_GIT_SHA:-}" --out "$LOGS/ncu-summary.json"
        ncu --version; } > "$LOGS/ncu.log" 2>&1 ;;
    ncuring) { mkdir -p "$LOGS/ring"; timeout ${NCU_LIMIT:-300} ncu --clock-control none --profile-from-start off --set full \
          --import-source yes -k regex:'route_kernel|tma_ring_kernel' -f -o "$LOGS/ring/ncu" \
          python3 -m benchmarks.probe_tma_ring --shapes ${NCU_RING_SHAPES:-128:bf16:8,128:fp32:8} \
          --profile ${NCU_RING_CONFIGS:-3:96:16,3:96:21} 250000 > "$LOGS/ring/ncu.log" 2>&1
        ncu -i "$LOGS/ring/ncu.ncu-rep" --page details --csv > "$LOGS/ring/ncu-details.csv"
        ncu -i "$LOGS/ring/ncu.ncu-rep" --page source --csv --print-source sass > "$LOGS/ring/ncu-source.csv"
        ncu -i "$LOGS/ring/ncu.ncu-rep" --page raw --csv > "$LOGS/ring/ncu-raw.csv"
        python3 -m benchmarks.ncu_summary "$LOGS/ring" --git "${PARITY_GIT_SHA:-}" --out "$LOGS/ring/ncu-summary.json"
        } > "$LOGS/ncu-ring.log" 2>&1 ;;
    ncurow) { timeout ${NCU_LIMIT:-300} ncu --clock-control none --profile-from-start off --section SourceCounters \
          --section WarpStateStats --section LaunchStats --section SpeedOfLight --warp-sampling-interval 0 \
          -k regex:'route_kernel|grouped_kernel' -f -o "$LOGS/ncu-row" \
          python3 -m benchmarks.profile_ncu ${NCU_ROW_ARGS:---models deepseek-v3 --dtypes bf16 --T 132 --bench-row 64:6}
        ncu -i "$LOGS/ncu-row.ncu-rep" --page source --csv --print-source sass > "$LOGS/ncu-row-source.csv"
        python3 -m benchmarks.ncu_lines "$LOGS/ncu-row-source.csv" ${NCU_LINES_ARGS:-} --out "$LOGS/ncu-row-lines.json"
        ncu --version; } > "$LOGS/ncu-row.log" 2>&1 ;;
    mutants) timeout ${MUTANTS_LIMIT:-500} python3 scripts/mutate_kernels.py --gpu --workers 16 --out reports/$GPU-kernel-mutants \
        --only ${MUTANTS_ONLY:-bound-without-sigmoid-term,bound-halved,sum-by-layout} > "$LOGS/mutants.log" 2>&1 ;;
    split) timeout 150 python3 -m benchmarks.probe_split --out "$LOGS/split.json" > "$LOGS/split.log" 2>&1 ;;
    launch) timeout ${LAUNCH_LIMIT:-120} python3 -m benchmarks.probe_launch --out "$LOGS/launch.json" ${LAUNCH_ARGS:-} \
        > "$LOGS/launch.log" 2>&1 ;;
    smallvec) timeout 150 python3 -m benchmarks.probe_fused --configs small --shapes 128:bf16,128:fp16,128:fp32,256:bf16 \
        --out "$LOGS/small-vec.json" 1 8 64 512 > "$LOGS/small-vec.log" 2>&1 ;;
  esac
  echo "$step: exit ${PIPESTATUS[0]:-?} in $(( $(date +%s) - start )) s" | tee -a "$OUT/steps.txt"
done
rm -f reports/*/records-gw*.jsonl
# hypothesis's database holds every failing example it found: it comes back to replay them here.
tar czf "$OUT/results.tar.gz" reports/$GPU* reports/bench/$GPU* reports/notebooks "$LOGS" \
    $([ -d .hypothesis ] && echo .hypothesis) 2>/dev/null
cat "$OUT/steps.txt"; tail -3 "$LOGS/pytest_cuda.log" "$LOGS/pytest_files.log" "$LOGS/properties.log" 2>/dev/null
grep -h '"us"\|nan_batch\|passed\|failed\|Error' "$LOGS/tma-ring.log" 2>/dev/null | cut -c1-240 | tail -60; tail -14 "$LOGS/ncu-ring.log" 2>/dev/null | cut -c1-300; tail -6 "$LOGS"/sweep_*.log 2>/dev/null; tail -22 "$LOGS"/fuzz*.log "$LOGS"/impact.log 2>/dev/null
