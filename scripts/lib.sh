# Shared by the scripts: find the repository, install what is missing from Debian's packages.
# Sourced, not run.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

APT_UPDATED=""
# ensure_command COMMAND PACKAGE...: install the Debian packages when COMMAND is missing.
ensure_command() {
    local command="$1"; shift
    command -v "$command" >/dev/null 2>&1 && return 0
    [ "$(id -u)" = 0 ] || die "'$command' is missing; install: sudo apt-get install -y $*"
    command -v apt-get >/dev/null 2>&1 || die "'$command' is missing and this is not a Debian system; install: $*"
    if [ -z "$APT_UPDATED" ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "installing $* (for $command)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
    command -v "$command" >/dev/null 2>&1 || die "'$command' still missing after installing $*"
}

# The Rust toolchain cannot come from Debian (its rustc is too old); rustup provides it.
ensure_rust() {
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    command -v cargo >/dev/null 2>&1 || die "Rust is missing: install it with rustup (https://rustup.rs), Rust ${RUST_MIN:-1.95} or newer"
    local have
    have="$(rustc --version | awk '{print $2}')"
    if [ "$(printf '%s\n%s\n' "${RUST_MIN:-1.95.0}" "$have" | sort -V | head -1)" != "${RUST_MIN:-1.95.0}" ]; then
        die "rustc $have is older than ${RUST_MIN:-1.95.0}: rustup update"
    fi
    for component in clippy rustfmt; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            command -v rustup >/dev/null 2>&1 || die "cargo $component is missing and there is no rustup to add it"
            rustup component add "$component" >&2 || die "rustup component add $component failed"
        fi
    done
    # mimalloc builds a little C.
    ensure_command cc build-essential
}

# Where built tools (the local control plane, Helm) are cached between runs.
HUBGUARD_CACHE="${HUBGUARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hubguard}"
export HUBGUARD_CACHE

ensure_go() {
    command -v go >/dev/null 2>&1 || ensure_command go golang-go
    local have
    have="$(go env GOVERSION | sed 's/^go//')"
    if [ "$(printf '%s\n%s\n' "1.26.0" "$have" | sort -V | head -1)" != "1.26.0" ]; then
        die "Go $have is older than 1.26.0, which Kubernetes 1.37 needs; install a newer Go from https://go.dev/dl"
    fi
}
