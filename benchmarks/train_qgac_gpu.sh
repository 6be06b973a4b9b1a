#!/usr/bin/env bash
# QGAC on one GPU in at most ~8 minutes (7 of training, then the held-out benchmark's QGAC rows).
# Prepared for a GPU machine; not yet run (the session that wrote it had none).
#
#   bash benchmarks/train_qgac_gpu.sh PHOTOS RUNS [MODEL]
#
# PHOTOS: the folder of `python benchmarks/zoo_photos.py --out PHOTOS`; RUNS: where the run goes.
# MODEL: qgac (default, m3l's 2.8M sizes) or qgac_crab / original_qgac_paper (the papers' sizes).
# The JPEG encoding of the patches runs on the CPU in DataLoader workers (about 25 ms per 64x64
# patch per core, ~10 batches/s from 14 workers: 4,000 steps fit the 7 minutes); float32 on
# the GPU: the DCT transforms are not autocast-safe in bf16.
set -euo pipefail
PHOTOS=${1:?usage: train_qgac_gpu.sh PHOTOS RUNS [MODEL]}
RUNS=${2:?usage: train_qgac_gpu.sh PHOTOS RUNS [MODEL]}
MODEL=${3:-qgac}
WORKERS=$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))
python -m m3l.run.train model="$MODEL" \
  trainer.accelerator=gpu trainer.devices=1 trainer.precision=32-true \
  data.train_dir="$PHOTOS/train" data.val_dir="$PHOTOS/val" data.test_dir="$PHOTOS/val" \
  data.patch_size=128 data.batch_size=32 data.patches_per_image=3000 data.num_workers="$WORKERS" \
  data.val_patch_size=256 trainer.max_steps=4000 +trainer.max_time=00:00:07:00 \
  trainer.val_check_interval=500 logger=csv paths.runs_dir="$RUNS" | tee "$RUNS/qgac_gpu_train.log"
echo "best checkpoint: $(ls "$RUNS"/"$MODEL"/train/*/checkpoints/best*.ckpt | tail -1)"
# with the best checkpoint: `python -m m3l.run.test model=$MODEL checkpoint=PATH` (validation photos),
# and make_weights.py on a zoo_runs.json record to ship it (see benchmarks/train_zoo.py)
