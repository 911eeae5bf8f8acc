#!/usr/bin/env bash
# Runs the whole test suite on the GPU path (burn's wgpu backend).
#
# The tests need a Vulkan driver (Metal on macOS). On Linux without one, this installs Mesa's
# software driver, lavapipe (Debian/Ubuntu: mesa-vulkan-drivers), when it can (root or
# passwordless sudo), and otherwise stops and says what to install. It never skips GPU tests.
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

if [ "$(uname -s)" = Linux ] && ! have_vulkan; then
    packages="mesa-vulkan-drivers libvulkan1"
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "No Vulkan driver found: installing Mesa's software driver (lavapipe): $packages"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
    elif command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then
        echo "No Vulkan driver found: installing Mesa's software driver (lavapipe): $packages"
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
    else
        echo "error: no Vulkan driver found, and this script cannot install one." >&2
        echo "Install your GPU's Vulkan driver, or Mesa's software one:" >&2
        echo "    sudo apt-get install $packages    # Debian / Ubuntu" >&2
        echo "    sudo dnf install mesa-vulkan-drivers vulkan-loader    # Fedora" >&2
        exit 1
    fi
    have_vulkan || { echo "error: still no Vulkan driver after installing $packages" >&2; exit 1; }
fi

# Autotune benchmarks every new kernel shape; on a software adapter keep that short.
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"
exec cargo test --release "$@"
