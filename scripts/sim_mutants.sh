#!/usr/bin/env bash
# Plants the bugs the simulation (tests/) must find, one at a time, in a scratch copy of the
# working tree, and prints for each how many of N seeded histories violate a checker.
#
#   bash scripts/sim_mutants.sh            # every mutant, 2,000 histories each
#   QUORATE_SIM_HISTORIES=500 bash scripts/sim_mutants.sh 'hole 2'
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scratch=${QUORATE_SIM_MUTANTS_DIR:-/tmp/quorate-sim-mutants}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$scratch-target}
export QUORATE_SIM_HISTORIES=${QUORATE_SIM_HISTORIES:-2000}
export QUORATE_SIM_KEEP_GOING=1
filter=${1:-}

# name | file | perl substitution; several "file|substitution" pairs joined by ' && '
mutants=(
  "hole 1 as reported: extensions shorten, the last to settle wins, no shrink on doubt|redlock/src/backend/memory.rs|s/if self.store.pttl\(key\) < ms \{/if true {/ && redlock/src/lease.rs|s/if until >= self.valid_until \{/if true {/ && redlock/src/lease.rs|s/self.valid_until = self.valid_until.min\(until\);/let _ = until;/"
  "hole 2: nodes ignore the semaphore's size|pool/src/allocate.rs|s/Ok\(match permits \{/Ok(match None::<i64> {/"
  "hole 4: a restart keeps the run id (snapshot marker trusted)|redlock/src/quarantine.rs|s/self.run \+= 1;/self.run += 0;/"
  "majority is n/2|redlock/src/quorum.rs|s/n \/ 2 \+ 1/n \/ 2/"
  "hole 4, fencing: no fence floor after a data loss|redlock/src/backend/memory.rs|s/\*counter = \(\*counter \+ 1\).max\(floor \+ 1\);/*counter += 1; let _ = floor;/"
  "no drift allowance|redlock/src/lease.rs|s/let drift = drift_for\(ttl, drift_factor\);\n        Lease \{/let drift = Duration::ZERO;\n        Lease {/s"
  "validity not shrunk on doubt|redlock/src/lease.rs|s/self.valid_until = self.valid_until.min\(until\);/let _ = until;/"
  "queue grant: lease counted from the full ttl, not min(ttl, waiter_ttl)|redlock/src/waiter.rs|s/\s*\.min\(options\.get_waiter_ttl\(\)\)//"
  "queue grant: no deadline check (a grant from before the latest round counts)|redlock/src/waiter.rs|s/g\.deadline == \*deadline \&\& //"
  "queue grant: a node where a round of the call was granted and undone still counts|redlock/src/waiter.rs|s/!took_over\.get\(\*node\)\.copied\(\)\.unwrap_or\(true\)/true/"
)

for mutant in "${mutants[@]}"; do
  name=${mutant%%|*}
  if [ -n "$filter" ] && ! [[ $name =~ $filter ]]; then continue; fi
  rm -rf "$scratch"; mkdir -p "$scratch"
  (git ls-files -co --exclude-standard | tar -cf - -T -) | tar -xmf - -C "$scratch"  # -m: fresh mtimes, so cargo rebuilds every mutated crate
  rest=${mutant#*|}
  sep=$'\x1f'
  IFS=$sep read -ra parts <<< "${rest// && /$sep}"
  for part in "${parts[@]}"; do
    file=${part%%|*}; subst=${part#*|}
    before=$(sha1sum "$scratch/$file")
    perl -0pi -e "$subst" "$scratch/$file"
    if [ "$before" = "$(sha1sum "$scratch/$file")" ]; then echo "$name: SKIPPED ($file unchanged)"; continue 2; fi
  done
  started=$(date +%s)
  out=$(cd "$scratch" && timeout "${QUORATE_SIM_MUTANT_TIMEOUT:-900}" cargo test -q -p quorate-system-tests --release --test simulation many -- --nocapture 2>&1 || true)
  line=$(grep -E "histories in" <<< "$out" | tail -1 || true)
  first=$(grep -oE "first: .*" <<< "$out" | head -1 | cut -c1-220 || true)
  echo "$name: ${line:-no summary (build failed?)} [$(( $(date +%s) - started )) s] ${first}"
done
rm -rf "$scratch"
