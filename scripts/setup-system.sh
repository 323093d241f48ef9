#!/usr/bin/env bash
# Installs the Debian packages Tessera needs outside npm, only when missing:
#   chromium            — real browser for the browser tests and the kernel benchmark
#   libvulkan1          — Vulkan loader for Dawn (npm `webgpu`) in Node
#   mesa-vulkan-drivers — lavapipe, a CPU Vulkan driver; bookworm's Mesa 22 is refused by Dawn,
#                         so it comes from bookworm-backports (Mesa 25), ~10x faster than SwiftShader.
set -euo pipefail
LVP_ICD=/usr/share/vulkan/icd.d/lvp_icd.json
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' || need+=(libvulkan1)
lvp_ok() { [ -f "$LVP_ICD" ] && dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -qE '^(2[5-9]|[3-9][0-9])\.'; }
lvp_ok || need+=(mesa-vulkan-drivers)
[ ${#need[@]} -eq 0 ] && exit 0

echo "[tessera] system packages missing: ${need[*]}"
if [ "$(id -u)" != 0 ]; then
  cat >&2 <<MSG
[tessera] Not root, so these cannot be installed automatically. Please run as root:
    apt-get update && apt-get install -y chromium libvulkan1
    echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/backports.list
    apt-get update && apt-get install -y -t bookworm-backports mesa-vulkan-drivers
Without them the Node GPU runtime (Dawn needs a Vulkan driver) and the browser tests cannot run.
MSG
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/tessera-backports.list
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium libvulkan1 >/dev/null
apt-get install -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers >/dev/null
lvp_ok || { echo "[tessera] lavapipe (Mesa >= 25) did not install: $LVP_ICD missing" >&2; exit 1; }
echo "[tessera] system packages installed"
