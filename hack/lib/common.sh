# Shared shell helpers for hack/*. Sourced, never run.
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../versions.env
source "$ROOT/hack/versions.env"
CACHE="${CAPBM_CACHE:-$ROOT/.cache}"

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$1" >&2
  [ $# -gt 1 ] && printf '  fix: %s\n' "$2" >&2
  exit 1
}

# need_cmd CMD HOW: fail with what to run when a prerequisite is missing.
need_cmd() { command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed" "$2"; }

need_root() {
  [ "$(id -u)" = 0 ] || die "this step needs root (network namespaces, mounts, apt-get)" "run it as root, e.g. sudo $0 $*"
}

# apt_install PKG...: install the Debian packages that are missing, and say so. Idempotent.
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  need_root apt_install
  step "installing Debian packages: ${missing[*]}"
  if ! { [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ] || apt-get update -qq; }; then
    die "apt-get update failed" "check the Debian mirror is reachable, then run apt-get update"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed" "run: apt-get install ${missing[*]}"
}

# npm_ready: node_modules matches package-lock.json (npm ci once, then only when the lock changes).
npm_ready() {
  need_cmd npm "install Node.js and npm (Debian: apt-get install nodejs npm)"
  local stamp="$ROOT/node_modules/.capbm-lock-hash" want
  want="$({ cat "$ROOT/package-lock.json"; echo "native modules built for node@24 (1)"; } | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    step "installing npm dependencies (npm ci)"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed" "run: cd $ROOT && npm ci"
    native_modules
    echo "$want" >"$stamp"
  fi
}

# native_modules: npm ci compiles ssh2's crypto binding (and cpu-features) for the Node.js that runs
# npm; the provider runs on the node@24 devDependency, which cannot load them (another ABI), so ssh2
# would fall back to a cipher object per packet in JavaScript. Builds them again for node@24, with
# its own headers (nothing downloaded). Optional, as for ssh2 itself: without a compiler, it says so.
native_modules() {
  local node_dir headers="" d
  node_dir="$ROOT/node_modules/node/bin"
  for d in "$ROOT"/node_modules/node/node_modules/node-linux-*; do
    [ -d "$d" ] && headers="$d" && break
  done
  [ -x "$node_dir/node" ] && [ -n "$headers" ] || return 0
  (cd "$ROOT" && PATH="$node_dir:$PATH" npm_config_nodedir="$headers" \
    npm rebuild ssh2 cpu-features --foreground-scripts --loglevel=error >"$ROOT/node_modules/.capbm-native.log" 2>&1) || true
  if ! (cd "$ROOT" && "$node_dir/node" -e "process.exit(require('ssh2/lib/protocol/crypto.js').bindingAvailable ? 0 : 1)" 2>/dev/null); then
    info "ssh2's crypto binding could not be built for node@24 (log: node_modules/.capbm-native.log; needs make, g++ and python3): SSH works, with more CPU per packet"
  fi
}

# agent_bundle: builds the node agent bundle the provider ships to hosts (dist/agent, cached by
# content); the provider only reads it (provider/health/bundle.ts). Needs npm_ready and PATH first.
agent_bundle() {
  node "$ROOT/agent/build.ts" >/dev/null || die "building the node agent bundle failed (output above)" "run: node agent/build.ts"
}

# lab_prerequisites: everything lab hosts and workload clusters need, built once and cached:
# the OS image (hack/rootfs, both Kubernetes versions), the registry content (hack/images), and the
# Debian packages the lab runs beside the hosts (the registry, the load balancer). Exports
# CAPBM_ROOTFS, CAPBM_REGISTRY, CAPBM_STOCK_ROOTFS and CAPBM_BUNDLES for the harness.
lab_prerequisites() {
  need_root lab_prerequisites
  apt_install docker-registry haproxy
  CAPBM_ROOTFS="$("$ROOT/hack/rootfs" build)" || die "building the lab OS image failed (output above)"
  CAPBM_REGISTRY="$("$ROOT/hack/images" build)" || die "building the lab images failed (output above)"
  # Stock lab hosts and the bundles that prepare them (docs/hosts.md).
  CAPBM_STOCK_ROOTFS="$("$ROOT/hack/bundle" stock)" || die "making the stock lab rootfs failed (output above)"
  CAPBM_BUNDLES="$("$ROOT/hack/bundle" build)" || die "building the host preparation bundles failed (output above)"
  export CAPBM_ROOTFS CAPBM_REGISTRY CAPBM_STOCK_ROOTFS CAPBM_BUNDLES
}
