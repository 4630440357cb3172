#!/usr/bin/env bash
# Re-create the pictures of the tutorial (docs/images/) by running the tutorial's commands on the
# built-in AdK example.  About 10 minutes on 2 CPU cores.  Usage: bash docs/make_tutorial_images.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-tutorial_run}
cryodyna example adk -o "$work/adk"
cryodyna train-atom "$work/adk/particles.star" "$work/adk/reference.pdb" -o "$work/atom" --epochs 10
cryodyna analyze "$work/atom"
last=$(ls -d "$work"/atom/epoch-* | tail -n 1)
cryodyna train-density "$work/adk/particles.star" --z "$last/z.npy" -o "$work/density" --epochs 5 --set model.hidden=256
vols=$(ls -d "$work"/density/epoch-* | tail -n 1)
cryodyna pdb2mrc "$work/adk/reference.pdb" --box 64 --apix 2.0 --atoms --sigma 1.0 -o "$work/closed.mrc"
cryodyna fsc "$vols/vol_pca_1_000.mrc" "$work/closed.mrc" --plot docs/images/fsc.png
cp "$last/z_distribution.png" "$last/input_image.png" "$last/pred_image.png" docs/images/
analysis=$(ls -d "$work"/atom/analysis/epoch-* | tail -n 1)
cp "$analysis/pca-1.png" "$analysis/losses.png" docs/images/
chromium --headless --no-sandbox --disable-gpu --enable-unsafe-swiftshader --hide-scrollbars --window-size=1400,1500 \
  --virtual-time-budget=8000 --screenshot=docs/images/report.png "file://$(realpath "$work/atom/report.html")"
