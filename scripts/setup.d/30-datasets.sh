#!/usr/bin/env bash
# Data sets for the accuracy flows (models/datasets.py), taken from Debian packages and
# unpacked (not installed) into a cache folder: dataset-fashion-mnist (Fashion-MNIST),
# r-cran-modeldata (small_fine_foods reviews), r-cran-janeaustenr (the novels).
# Idempotent: a package already unpacked is skipped. Folder: $HYFLEXPIM_DEBDATA or
# ~/.cache/hyflexpim/debdata. Failure here only disables the flows that need the data.
set -euo pipefail
DEST="${HYFLEXPIM_DEBDATA:-$HOME/.cache/hyflexpim/debdata}"
mkdir -p "$DEST"
updated=0
for pkg in dataset-fashion-mnist r-cran-modeldata r-cran-janeaustenr; do
  [ -f "$DEST/$pkg/.done" ] && continue
  echo "[setup] unpacking Debian package $pkg into $DEST" >&2
  tmp="$(mktemp -d)"
  if ! (cd "$tmp" && apt-get download -qq "$pkg" >/dev/null 2>&1); then
    if [ "$updated" -eq 0 ]; then
      SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
      $SUDO apt-get update -qq || true
      updated=1
    fi
    if ! (cd "$tmp" && apt-get download -qq "$pkg" >/dev/null); then
      echo "[setup] warning: could not download $pkg; its flows will be unavailable" >&2
      rm -rf "$tmp"; continue
    fi
  fi
  rm -rf "$DEST/$pkg"; mkdir -p "$DEST/$pkg"
  dpkg-deb -x "$tmp"/"$pkg"_*.deb "$DEST/$pkg"
  touch "$DEST/$pkg/.done"
  rm -rf "$tmp"
done
