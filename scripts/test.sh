#!/usr/bin/env bash
# Runs the whole test suite on the GPU path (burn's wgpu backend).
#
# The tests need a Vulkan driver (Metal on macOS). On Linux without one, this installs Mesa's
# software driver, lavapipe (Debian/Ubuntu: mesa-vulkan-drivers), when it can (root or
# passwordless sudo), and otherwise stops and says what to install. It never skips GPU tests.
# The same goes for Mesa's EGL (the OpenGL test) and nats-server (the NATS tests). With rustup,
# it first compile-checks the Windows (DX12) and macOS (Metal) builds.
set -euo pipefail
cd "$(dirname "$0")/.."

have_vulkan() {
    local loader=0 icd=0
    for dir in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
        [ -e "$dir/libvulkan.so.1" ] && loader=1
    done
    for dir in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
        compgen -G "$dir/*.json" >/dev/null && icd=1
    done
    [ -n "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && icd=1
    [ "$loader" = 1 ] && [ "$icd" = 1 ]
}

# install_or_explain WHAT PACKAGES: installs Debian/Ubuntu packages when this script can (root
# or passwordless sudo), else stops and says what to install.
install_or_explain() {
    local what="$1" packages="$2"
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "No $what found: installing $packages"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
    elif command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then
        echo "No $what found: installing $packages"
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
    else
        echo "error: no $what found, and this script cannot install one." >&2
        echo "Install it:    sudo apt-get install $packages    # Debian / Ubuntu" >&2
        exit 1
    fi
}

if [ "$(uname -s)" = Linux ] && ! have_vulkan; then
    packages="mesa-vulkan-drivers libvulkan1"
    install_or_explain "Vulkan driver (Mesa's software one, lavapipe; or your GPU's)" "$packages"
    have_vulkan || { echo "error: still no Vulkan driver after installing $packages" >&2; exit 1; }
fi

# The OpenGL test (tests/unet_vae.rs) runs wgpu's GL backend on Mesa's EGL (llvmpipe here).
have_gl() {
    local dir
    for dir in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib; do
        [ -e "$dir/libEGL.so.1" ] && [ -e "$dir/libEGL_mesa.so.0" ] && return 0
    done
    return 1
}
if [ "$(uname -s)" = Linux ] && ! have_gl; then
    packages="libegl1 libegl-mesa0 libgl1-mesa-dri"
    install_or_explain "OpenGL driver (Mesa's EGL, llvmpipe; or your GPU's)" "$packages"
    have_gl || { echo "error: still no EGL driver after installing $packages" >&2; exit 1; }
fi

# The NATS tests (tests/nats.rs) start a real nats-server with JetStream on loopback ports.
have_nats() { command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ]; }
if ! have_nats; then
    install_or_explain "nats-server (for tests/nats.rs)" "nats-server"
    have_nats || { echo "error: still no nats-server after installing it" >&2; exit 1; }
fi

# The other platforms' GPU paths must compile: Windows (DX12) and macOS (Metal) are checked
# here, since this machine cannot run them. Without the `nats` feature: its TLS stack (ring)
# compiles C for the target, which needs that platform's C toolchain, and its code is
# platform-independent Rust, tested below.
cross_check() {
    if ! command -v rustup >/dev/null; then
        echo "skipped: the Windows and macOS compile checks (they need rustup, to add those targets' standard libraries)"
        return
    fi
    rustup target add x86_64-pc-windows-gnu aarch64-apple-darwin >/dev/null 2>&1 \
        || { echo "error: rustup could not add the x86_64-pc-windows-gnu and aarch64-apple-darwin targets" >&2; exit 1; }
    local what=(--lib --bins --tests --no-default-features)
    echo "compile check: x86_64-pc-windows-gnu (DX12), aarch64-apple-darwin (Metal)"
    cargo check --release --quiet --target x86_64-pc-windows-gnu "${what[@]}" --features cli
    cargo check --release --quiet --target aarch64-apple-darwin "${what[@]}" --features cli,metal
}
cross_check

# Autotune benchmarks every new kernel shape; on a software adapter keep that short.
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"
# One test at a time within each test binary: on a software adapter two GPU tests at once contend
# for the same cores (lavapipe already spreads each dispatch over them) and a binary takes about
# twice as long (tests/pipeline.rs: 304 s with two threads, 149 s with one, on 2 cores).
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-1}"
# Every test process (and every `sdxl-wgpu` it starts) shares one cache of autotune results and
# throughput probes, as a user's runs do: a shape tuned by one test binary is not tuned again by
# the next. Tests of the cache itself use folders of their own.
export SDXL_WGPU_CACHE_DIR="${SDXL_WGPU_CACHE_DIR:-$PWD/target/test-cache}"
exec cargo test --release "$@"
