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
    # Every build of hubguard compiles the node agent's kernel programs.
    ensure_ebpf_toolchain
}

# The node agent's kernel programs are C built by clang against libbpf's headers (build.rs);
# its tests need iproute2 (network namespaces) and its benchmark iptables (the z2jh baseline).
ensure_ebpf_toolchain() {
    ensure_command clang clang
    ensure_command llvm-strip llvm
    if [ ! -f /usr/include/bpf/bpf_helpers.h ]; then
        ensure_package_file /usr/include/bpf/bpf_helpers.h libbpf-dev
    fi
    [ -f /usr/include/linux/bpf.h ] || ensure_package_file /usr/include/linux/bpf.h linux-libc-dev
    ensure_command ip iproute2
    ensure_command iptables iptables
}

# ensure_package_file FILE PACKAGE: install PACKAGE when FILE is missing.
ensure_package_file() {
    local file="$1" package="$2"
    [ -e "$file" ] && return 0
    [ "$(id -u)" = 0 ] || die "$file is missing; install: sudo apt-get install -y $package"
    if [ -z "$APT_UPDATED" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "installing $package (for $file)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >&2 || die "apt-get install $package failed"
    [ -e "$file" ] || die "$file still missing after installing $package"
}

# Where built tools (the local control plane, Helm) are cached between runs.
HUBGUARD_CACHE="${HUBGUARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hubguard}"
export HUBGUARD_CACHE

# cached_tool NAME: NAME from PATH, else the one scripts/tools built into the cache.
cached_tool() {
    if command -v "$1" >/dev/null 2>&1; then command -v "$1"
    elif [ -x "$HUBGUARD_CACHE/bin/$1" ]; then echo "$HUBGUARD_CACHE/bin/$1"
    else die "$1 is missing: install it, or run scripts/tools to build it into $HUBGUARD_CACHE/bin"; fi
}

GO_TOOLCHAIN="go1.26.8"

# Go for building the control plane and Helm. A machine without Go, or with one too old to
# switch toolchains itself (< 1.21), gets the pinned toolchain from the Go module proxy, where
# Go publishes its own toolchains (golang.org/toolchain), into the cache.
ensure_go() {
    local have=""
    command -v go >/dev/null 2>&1 && have="$(go env GOVERSION 2>/dev/null | sed 's/^go//')"
    if [ -n "$have" ] && [ -z "${HUBGUARD_FORCE_GO_DOWNLOAD:-}" ]; then
        if [ "$(printf '%s\n%s\n' "1.26.0" "$have" | sort -V | head -1)" = "1.26.0" ]; then
            return 0
        fi
        if [ "$(printf '%s\n%s\n' "1.21.0" "$have" | sort -V | head -1)" = "1.21.0" ]; then
            log "Go $have is older than 1.26: using $GO_TOOLCHAIN through GOTOOLCHAIN"
            export GOTOOLCHAIN="$GO_TOOLCHAIN"
            return 0
        fi
    fi
    local root="$HUBGUARD_CACHE/$GO_TOOLCHAIN"
    if [ ! -x "$root/bin/go" ]; then
        ensure_command curl curl
        ensure_command unzip unzip
        local proxy="${GOPROXY:-https://proxy.golang.org}"
        proxy="${proxy%%,*}"
        local url="$proxy/golang.org/toolchain/@v/v0.0.1-$GO_TOOLCHAIN.linux-$(dpkg --print-architecture 2>/dev/null || echo amd64).zip"
        log "fetching $GO_TOOLCHAIN from the Go module proxy ($url)"
        local tmp
        tmp="$(mktemp -d)"
        curl -fsSL --retry 3 -o "$tmp/go.zip" "$url" || die "downloading $url failed"
        unzip -q "$tmp/go.zip" -d "$tmp" || die "unpacking the Go toolchain failed"
        mkdir -p "$HUBGUARD_CACHE"
        rm -rf "$root"
        mv "$tmp/golang.org/toolchain@v0.0.1-$GO_TOOLCHAIN.linux-"* "$root"
        rm -rf "$tmp"
    fi
    export PATH="$root/bin:$PATH"
    export GOTOOLCHAIN=local
    go version >/dev/null || die "the downloaded Go toolchain does not run"
}
