#!/usr/bin/env bash
# Standard-cell liberty and static timing for `hyflexpim synth` (idempotent).
# - OSU 0.18 um cells: Debian's qflow-tech-osu018 is downloaded (not installed) and
#   unpacked into ${HYFLEXPIM_CACHE:-~/.cache/hyflexpim}/osu018, where sim/synth.py looks.
# - OpenSTA: Debian's opensta (the `sta` command), installed when missing.
# Failures are not fatal: the synthesis flow then falls back to generic gate counts
# (no liberty) or reports timing as unavailable (no sta), and says so.
set -uo pipefail
cache="${HYFLEXPIM_CACHE:-$HOME/.cache/hyflexpim}"
dest="$cache/osu018"
lib="$dest/usr/share/qflow/tech/osu018/osu018_stdcells.lib"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
updated=0
apt_update() {
  if [ "$updated" -eq 0 ]; then $SUDO apt-get update -qq >/dev/null 2>&1 || true; updated=1; fi
}
if [ ! -f "$lib" ]; then
  echo "[setup] extracting the OSU 0.18 um liberty (qflow-tech-osu018) into $dest" >&2
  mkdir -p "$dest"
  work="$(mktemp -d)"
  ( cd "$work" && apt-get download qflow-tech-osu018 >/dev/null 2>&1 ) || {
    apt_update; ( cd "$work" && apt-get download qflow-tech-osu018 >/dev/null 2>&1 ); }
  deb="$(ls "$work"/qflow-tech-osu018_*.deb 2>/dev/null | head -n1)"
  if [ -n "$deb" ] && dpkg-deb -x "$deb" "$dest" && [ -f "$lib" ]; then
    echo "[setup] liberty: $lib" >&2
  else
    echo "[setup] WARNING: could not fetch qflow-tech-osu018; 'hyflexpim synth' will report generic gate counts only" >&2
  fi
  rm -rf "$work"
fi
if ! command -v sta >/dev/null 2>&1; then
  echo "[setup] installing OpenSTA (apt-get install opensta)" >&2
  apt_update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends opensta >/dev/null 2>&1 \
    || echo "[setup] WARNING: opensta not installed; 'hyflexpim synth' will report timing as unavailable" >&2
fi
exit 0
