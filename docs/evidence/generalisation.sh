#!/usr/bin/env bash
# The evidence of docs/models.md "Generalisation" (issue 8): a calibrated cohort at the
# default difficulty, every model under patient-wise 5-fold CV and leave-one-site-out,
# cross-cohort runs against a cohort of another difficulty and seed, and the one-page report.
# Usage: bash docs/evidence/generalisation.sh WORKDIR [SUBJECTS_PER_SITE] [TEST_SUBJECTS_PER_SITE]
set -euo pipefail
W=${1:?workdir}; N=${2:-10}; M=${3:-4}
E=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$W"
gen() {  # gen NAME DIFFICULTY SEED SUBJECTS: cohort + ETL + default features
  [ -f "$W/$1/truth/channels.parquet" ] || python - "$W/$1" "$4" "$2" "$3" <<'PY'
import sys
from sozstore.phantom import PhantomConfig, generate_cohort
out, n, level, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
# the demo's 5-minute CHUL interictal recordings (the generator's default is an hour)
generate_cohort(out, subjects_per_site=n, seed=seed,
                config=PhantomConfig(difficulty=level, chul_interictal_hours=5 / 60))
PY
  for t in "$W/$1"/sites/*.toml; do sozstore etl --site "$t" --store "$W/$1/store" --workers 2; done
}
gen moderate moderate 0 "$N"
gen hard hard 1 "$M"
S="$W/moderate/store"; T="$W/moderate/truth"
for m in spike_rate hfo_rate ei fragility svm stack sozformer dcgru szloc; do
  cfg=(); [ -f "$E/$m.json" ] && cfg=(--config "$E/$m.json")
  sozstore train "$m" --store "$S" --truth "$T" --cv 5 "${cfg[@]}"
  sozstore train "$m" --store "$S" --truth "$T" --leave-site-out "${cfg[@]}"
  sozstore train "$m" --store "$S" --test-store "$W/hard/store" --test-truth "$W/hard/truth" "${cfg[@]}"
done
for m in stack svm; do   # leak controls
  sozstore train "$m" --store "$S" --truth "$T" --cv 5 --shuffle-labels --seed 1
done
sozstore query run_comparison --store "$S"
sozstore report generalisation --store "$S" --out "$W/generalisation.html"
