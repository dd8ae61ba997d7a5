#!/usr/bin/env bash
# Hand-made mutants of quorate's safety-critical lines, each a one-line bug, run against the
# real-server suites: a mutant is killed when at least one test fails. Prints one line per
# mutant and the failing tests. Works in a scratch git worktree with its own target
# directory, so the checkout you work in is never touched.
#
#   bash scripts/mutants.sh                 # every mutant
#   bash scripts/mutants.sh majority        # the mutants whose name matches this (extended regex)
#   bash scripts/mutants.sh 'pool|tree'
#
# Needs redis-server and faketime (bash scripts/test.sh installs them). Takes a few minutes
# per mutant (a rebuild plus the suites below).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
scratch=${QUORATE_MUTANTS_DIR:-/tmp/quorate-mutants}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$scratch-target}
filter=${1:-}
# a mutant that makes a suite hang counts as killed (and says so)
suite_timeout=${QUORATE_MUTANT_TIMEOUT:-300}

# name | file | perl substitution (the mutant is skipped if it changes nothing)
#      [| suites: cargo test arguments separated by ';', default the redlock suites below]
pool_suites="-p quorate-pool"
tree_suites="-p quorate-tree"
mutants=(
  "majority is n/2|redlock/src/quorum.rs|s/n \/ 2 \+ 1/n \/ 2/"
  "no drift allowance|redlock/src/lease.rs|s/drift: drift_for\(ttl, drift_factor\),/drift: Duration::ZERO,/"
  "release deletes any holder's key|redlock/scripts/release.lua|s/if redis.call\('GET', KEYS\[i\]\) == token then/if redis.call('EXISTS', KEYS[i]) == 1 then/"
  "extend ignores the token|redlock/scripts/extend.lua|s/if redis.call\('GET', key\) ~= ARGV\[1\] then/if false then/"
  "no undo of a failed or cancelled round|redlock/src/acquire.rs|s/if !self.armed \{/if true {/"
  "no fence write-back|redlock/src/acquire.rs|s/\|node\| node.raise_fence\(keys, fence\),/|node| node.raise_fence(keys, 0),/"
  "fence write-back result ignored|redlock/src/acquire.rs|s/if raised.successes >= inner.quorum \{/if true {/"
  "quarantine refuses nothing|redlock/scripts/quarantine.lua|s/return redis.error_reply\('QUORATE_QUARANTINED ' .. left\)/-- refuses nothing/"
  "watchdog settles on the first majority|redlock/src/watchdog.rs|s/Decide::AllWithGrace,/Decide::Majority(self_quorum),/"
  "round drops the requests still in flight|redlock/src/quorum.rs|s/if !pending.is_empty\(\) \{/if pending.is_empty() {/"
  "hand-off with a tenth of the ttl left|redlock/src/mutex.rs|s/options.get_ttl\(\) \/ 2;/options.get_ttl() \/ 10;/g"
  "acquire.lua grants over a held key|redlock/scripts/acquire.lua|s/if value and not \(queued and value == mine\) then/if false then/"
  "acquire.lua checks only the first key|redlock/scripts/acquire.lua|s/for i = 1, n do/for i = 1, 1 do/"
  "batch.lua acquire overwrites a held key|redlock/scripts/batch.lua|s/redis.call\('SET', key, token, 'NX', 'PX', extra\)/redis.call('SET', key, token, 'PX', extra)/"
  "batch.lua release deletes any holder's key|redlock/scripts/batch.lua|s/if redis.call\('GET', key\) == token then/if true then/"
  "pool: no undo of a failed or cancelled round|pool/src/allocate.rs|s/if !self.armed \{/if true {/|$pool_suites"
  "pool: take.lua takes held candidates|pool/scripts/take.lua|s/if redis.call\('EXISTS', KEYS\[i\]\) == 1 then/if false then/|$pool_suites"
  "tree: no undo of a failed or cancelled round|tree/src/acquire.rs|s/if !self.armed \{/if true {/|$tree_suites"
  "tree: acquire.lua ignores locked ancestors|tree/scripts/acquire.lua|s/if pttl ~= -2 then/if false then/|$tree_suites"
  "tree: acquire.lua ignores live descendants|tree/scripts/acquire.lua|s/return conflict\('descendant', path, pttl\)/redis.call('SREM', index, path)/|$tree_suites"
  "tree: acquire.lua registers with no ancestor|tree/scripts/acquire.lua|s/redis.call\('SADD', KEYS\[i\], node\)/-- unregistered/|$tree_suites"
)

# The suites a redlock mutant runs against: the redlock crate's own tests (unit, memory),
# the conformance suite and the real-server mutex, queue and data-loss suites.
redlock_suites=(
  "-p quorate-redlock"
  "-p quorate-redlock --test conformance"
  "-p quorate-redlock --test redlock_real"
  "-p quorate-redlock --test queue_real"
  "-p quorate-redlock --test data_loss_real"
)

rm -rf "$scratch"
git worktree prune
git worktree add --detach "$scratch" HEAD >/dev/null
trap 'git -C "$root" worktree remove --force "$scratch" >/dev/null 2>&1 || true' EXIT

for entry in "${mutants[@]}"; do
  IFS='|' read -r name file substitution own_suites <<<"$entry"
  if [ -n "$filter" ] && ! [[ "$name" =~ $filter ]]; then
    continue
  fi
  git -C "$scratch" checkout -q -- .
  before=$(sha1sum "$scratch/$file")
  perl -0pi -e "$substitution" "$scratch/$file"
  if [ "$before" = "$(sha1sum "$scratch/$file")" ]; then
    echo "SKIPPED  $name: the substitution matched nothing in $file"
    continue
  fi
  if [[ "$name" == watchdog* ]]; then
    # the mutant needs the quorum in scope
    perl -0pi -e 's/let \(nodes, settled\) = \(self.nodes.clone\(\), settled.clone\(\)\);/let (nodes, settled, self_quorum) = (self.nodes.clone(), settled.clone(), self.quorum);/' "$scratch/$file"
  fi
  if [ -n "$own_suites" ]; then
    IFS=';' read -r -a suites <<<"$own_suites"
  else
    suites=("${redlock_suites[@]}")
  fi
  failed=()
  for suite in "${suites[@]}"; do
    status=0
    # shellcheck disable=SC2086
    out=$(cd "$scratch" && timeout -k 5 "$suite_timeout" cargo test --no-fail-fast $suite 2>&1) || status=$?
    if [ "$status" -eq 0 ]; then
      continue
    fi
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
      pkill -f "$CARGO_TARGET_DIR/debug/deps" || true
      failed+=("[hung: $suite, stopped after $suite_timeout s]")
    elif ! grep -q "test result" <<<"$out"; then
      failed+=("[does not compile: $suite]")
    else
      names=$(grep -oP '^test \K\S+(?= \.\.\. FAILED)' <<<"$out" | sort -u)
      if [ -n "$names" ]; then
        while read -r test; do failed+=("$test"); done <<<"$names"
      else
        failed+=("[$suite failed]")
      fi
    fi
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "KILLED   $name (${#failed[@]}): ${failed[*]}"
  else
    echo "SURVIVED $name"
  fi
done
git -C "$scratch" checkout -q -- .
