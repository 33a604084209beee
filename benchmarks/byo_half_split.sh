#!/bin/bash
# CNN vs random forest, glacier IoU on the east half of a synthetic 8 km scene trained on its
# west half, from a Landsat-like 4-band file (optical4) and from all 30 layers on the same grid
# (all). CLI only, apart from making the Landsat-like file. Results: docs/your-own-data.md.
# Usage: benchmarks/byo_half_split.sh WORKDIR [OVERLAP] [EPOCHS]   (defaults 0 and 40)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$1; OVERLAP=${2:-0}; EPOCHS=${3:-40}
mkdir -p "$WORK" && cd "$WORK"
[ -d syn ] || glacierstack synth --out syn --size-km 8 --no-progress
[ -f scene.tif ] || PYTHONPATH="$ROOT" python -c "
from pathlib import Path; from tests.byo.landsat_like import make_landsat_like
make_landsat_like(Path('syn'), Path('scene.tif'))"
cp syn/synthetic-truth/*/glacier_outlines.gpkg outlines.gpkg
[ -d catalog ] || glacierstack stac-from-files scene.tif --out catalog --sensor landsat-etm-c2l2 \
    --bands B1,B2,B3,B4 --datetime 2018-10-15
for v in optical4 all; do
  if [ $v = optical4 ]; then CAT=catalog; else CAT=syn/catalog.json; fi
  [ -d cube_$v.zarr ] || glacierstack cube --catalog $CAT --like scene.tif --out cube_$v.zarr \
      --scheme glacier --glacier-outlines outlines.gpkg --chunk-size 256 --no-progress
  cryonet split --cube cube_$v.zarr --out split_$v.json --patch-size 32 --overlap "$OVERLAP" \
      --train-area west --test-area east
  rm -rf run_$v map_$v.zarr
  /usr/bin/time -f "train $v %e s" cryonet train --cube cube_$v.zarr --out run_$v --config cpu \
      --split-file split_$v.json --patch-size 32 --epochs "$EPOCHS" --threads 1 --no-progress
  /usr/bin/time -f "forest $v %e s" cryonet baseline --cube cube_$v.zarr \
      --split-file split_$v.json --out forest_$v.tif
  cryonet predict --checkpoint run_$v/checkpoints/best.pt --cube cube_$v.zarr --out map_$v.zarr \
      --no-progress
  cryonet score --cube cube_$v.zarr --area east --map cnn=map_$v.zarr --map forest=forest_$v.tif \
      --out scores_$v.json
done
