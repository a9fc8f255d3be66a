#!/usr/bin/env bash
# Icarus Verilog for the cocotb regressions: installed with apt-get when missing.
set -euo pipefail
if ! command -v iverilog >/dev/null 2>&1; then
  echo "[setup] installing Icarus Verilog (apt-get)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq iverilog >/dev/null
fi
