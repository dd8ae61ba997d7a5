#!/usr/bin/env bash
# The test command: installs redis-server, faketime, openssl and prometheus when missing (Debian/Ubuntu, via apt-get;
# sudo when not root), then runs every test of the workspace against real local servers.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: install ${need[*]} yourself (e.g. brew install redis libfaketime)" >&2
    exit 1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The system service (if the package started one) is not used: tests start their own servers.
redis-server --version

cargo test --workspace "$@"
# The optional features with tests of their own: serde results of compute_once, TLS
# (certificates made by openssl for the test), and the blocking API.
cargo test -p quorate-spinlock --features serde "$@"
cargo test -p quorate-redlock --features serde --lib config "$@"
cargo test -p quorate-redlock --features serde --doc RedlockConfig "$@"
cargo test -p quorate-redlock --features tls --test tls_real "$@"
cargo test -p quorate-cli --features tls --test cli_tls "$@"
cargo test -p quorate-redlock --features blocking --test blocking_real "$@"
# The dashboard: the metrics_server example scraped by a real prometheus, every panel's query
# answered with data.
cargo test -p quorate-examples --features prometheus --test dashboard "$@"
