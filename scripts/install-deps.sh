#!/usr/bin/env bash
# Installs bookrec's build and test dependencies from Debian's packages.
# Idempotent: packages already present are left alone. Run as root (or with sudo).
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  zlib1g-dev            # .csv.gz input
  libcmocka-dev         # unit tests
  libsdl2-dev           # bookrec-viz window
  libstb-dev            # stb_image_write for PNG output
  libmicrohttpd-dev     # bookrec-infer --serve
  libjansson-dev        # JSON bodies for the server
  curl jq               # tests/cli/server.sh and infer.sh: HTTP requests, JSON checks
  libopenmpi-dev openmpi-bin   # bookrec-train --distributed (optional at build time), tests/cli/mpi.sh
  clang libclang-rt-dev libomp-dev   # scripts/fuzz.sh: clang, its libFuzzer/ASan runtime, OpenMP for clang
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all dependencies present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
