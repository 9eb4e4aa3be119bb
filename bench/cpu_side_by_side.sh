#!/usr/bin/env bash
# CPU side by side for issue 13: every workload of the acceptance, diffuse then PyTorch, back to
# back in one run, with the machine named. Run it on a quiet machine (nothing else running).
#
#   THREADS   thread count for both sides (default 2)
#   ITERS     timed iterations of the UNet workloads (default 3, after 1 warm-up)
#   OUT       folder for the logs and the summary (default out/cpu)
#   PYTHON    a Python with torch, torchvision, numpy, pillow (default bench/.venv/bin/python)
#   ONLY      space-separated subset of: toy unet fwd fid (default all)
#   ROUNDS    back-to-back diffuse/PyTorch pairs of the UNet training step (default 1)
#
# Build first: cargo build --release --bin diffuse --examples
set -u
THREADS=${THREADS:-2}
ITERS=${ITERS:-3}
OUT=${OUT:-out/cpu}
PY=${PYTHON:-bench/.venv/bin/python}
ONLY=${ONLY:-toy unet fwd fid}
ROUNDS=${ROUNDS:-1}
BIN=target/release
mkdir -p "$OUT"
SUM="$OUT/summary.txt"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
  echo "flags: $(grep -o -w -E 'avx2|avx512f|amx_bf16|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  echo "threads: $THREADS"
  echo "diffuse: $(git rev-parse --short HEAD 2>/dev/null)"
  echo "torch: $($PY -c 'import torch; print(torch.__version__)')"
} | tee "$SUM"
export RAYON_NUM_THREADS=$THREADS BENCH_THREADS=$THREADS
want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }
wall() { /usr/bin/time -f '%e s wall, %M KB peak RSS' "$@"; }

if want toy; then
  for run in 1 2 3; do
    wall "$BIN/diffuse" toy run --seed 0 --threads "$THREADS" -q --out "$OUT/toy-ours" \
      > "$OUT/toy-ours-$run.log" 2>&1
    wall "$PY" bench/torch/toy_torch.py run --seed 0 --threads "$THREADS" \
      > "$OUT/toy-torch-$run.log" 2>&1
    echo "toy run $run: diffuse $(tail -1 "$OUT/toy-ours-$run.log") | torch $(tail -1 "$OUT/toy-torch-$run.log")" | tee -a "$SUM"
  done
fi

if want unet; then
  # ROUNDS > 1 repeats the diffuse/twin pair back to back (the reference-style module runs in
  # the first round only), so that drift in the machine's speed shows up as spread.
  for round in $(seq 1 "$ROUNDS"); do
    wall "$BIN/examples/unet_bench" "$ITERS" train 1 > "$OUT/unet-ours-$round.log" 2>&1
    wall "$PY" bench/torch/unet_torch.py bench "$ITERS" train 1 > "$OUT/unet-twin-$round.log" 2>&1
    nets="ours twin"
    if [ "$round" = 1 ]; then
      BENCH_NET=reference wall "$PY" bench/torch/unet_torch.py bench "$ITERS" train 1 > "$OUT/unet-ref-$round.log" 2>&1
      nets="ours twin ref"
    fi
    for f in $nets; do
      echo "unet train b16 $f (round $round): $(grep -h 'BENCH' "$OUT/unet-$f-$round.log" | head -1) | $(tail -1 "$OUT/unet-$f-$round.log")" | tee -a "$SUM"
    done
  done
fi

if want fwd; then
  "$BIN/examples/unet_bench" "$ITERS" fwd 1 > "$OUT/fwd-ours.log" 2>&1
  "$PY" bench/torch/unet_torch.py bench "$ITERS" fwd 1 > "$OUT/fwd-twin.log" 2>&1
  BENCH_NET=reference "$PY" bench/torch/unet_torch.py bench "$ITERS" fwd 1 > "$OUT/fwd-ref.log" 2>&1
  for f in ours twin ref; do
    echo "unet fwd b32 $f: $(grep -h 'BENCH' "$OUT/fwd-$f.log" | tr '\n' ' ')" | tee -a "$SUM"
  done
fi

if want fid; then
  for run in 1 2 3; do
    "$BIN/examples/fid_bench" throughput tests/golden/inception_ref_tiny.ckpt 3 > "$OUT/fid-ours-$run.log" 2>&1
    "$PY" bench/torch/fid_torch.py throughput > "$OUT/fid-torch-$run.log" 2>&1
    echo "inception $run ours: $(tail -1 "$OUT/fid-ours-$run.log")" | tee -a "$SUM"
    echo "inception $run torch: $(tail -1 "$OUT/fid-torch-$run.log")" | tee -a "$SUM"
  done
fi
