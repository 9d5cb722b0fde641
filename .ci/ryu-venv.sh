#!/usr/bin/env bash
# Create .venv-ryu/: Ryu 4.34 on Python 3.9 with wlbridge installed (editable), for
# `ryu-manager wlbridge_app` and the Ryu integration test.
#
#   .ci/ryu-venv.sh              build or refresh (quick no-op when up to date)
#   .ci/ryu-venv.sh --test       also install the test tools (pytest, hypothesis, scapy)
#   .ci/ryu-venv.sh --print      print the venv's python path (building it first if needed)
#
# Ryu 4.34 does not start on Python >= 3.10 (eventlet), so the interpreter must be a 3.9:
# $RYU_PYTHON if set, else pyenv's newest 3.9.x, else `python3.9` on PATH.
# Up to date = the stamp file records the same inputs (this script, setup.cfg, pyproject.toml,
# the interpreter, the extras).  Concurrent runs are serialised with flock.
set -euo pipefail

ROOT="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)"
VENV="${RYU_VENV:-$ROOT/.venv-ryu}"
STAMP="$VENV/.wlbridge-installed"
LOCK="/tmp/.wlbridge-ryu-venv-$(id -u).lock"
# pyroute2 0.8+ runs netlink on asyncio, which fails under eventlet's green threads
# ("This event loop is already running" in the tick thread's address lookup)
RYU_PINS=(ryu==4.34 eventlet==0.30.2 "pyroute2>=0.7,<0.8")
SETUPTOOLS_PIN=setuptools==67.6.1   # Ryu 4.34's setup.py (pbr, easy_install) needs an old one
TEST_PKGS=("pytest>=7" "pytest-timeout>=2.1" "hypothesis>=6" "scapy>=2.5")

want_test=0
print_only=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --print) print_only=1 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ryu-venv: unknown argument $arg" >&2; exit 2 ;;
  esac
done

log() { [ "$print_only" = 1 ] && echo "ryu-venv: $*" >&2 || echo "ryu-venv: $*"; }

is39() { "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 9))' \
           >/dev/null 2>&1; }

find_python39() {
  local c root
  if [ -n "${RYU_PYTHON:-}" ]; then
    is39 "$RYU_PYTHON" && { echo "$RYU_PYTHON"; return 0; }
    echo "ryu-venv: RYU_PYTHON=$RYU_PYTHON is not a Python 3.9 with venv/ensurepip" >&2
    return 1
  fi
  root=""
  if command -v pyenv >/dev/null 2>&1; then root="$(pyenv root 2>/dev/null || true)"; fi
  [ -n "$root" ] || root="${PYENV_ROOT:-$HOME/.pyenv}"
  # newest 3.9.x first
  for c in $(ls -d "$root"/versions/3.9.*/bin/python3.9 2>/dev/null | sort -V -r); do
    is39 "$c" && { echo "$c"; return 0; }
  done
  c="$(command -v python3.9 2>/dev/null || true)"
  if [ -n "$c" ] && is39 "$c"; then
    # resolve a pyenv shim to the real interpreter, so the venv does not depend on the shim
    "$c" -c 'import sys; print(sys.executable)'
    return 0
  fi
  cat >&2 <<EOF
ryu-venv: no Python 3.9 found (Ryu 4.34 needs Python <= 3.9).
  looked in: \$RYU_PYTHON, $root/versions/3.9.*/bin/python3.9, python3.9 on PATH
  install one, e.g. \`pyenv install 3.9\`, or point RYU_PYTHON at a python3.9
EOF
  return 1
}

PY39="$(find_python39)"
inputs() {
  # everything that should trigger a reinstall when it changes
  echo "root=$ROOT venv=$VENV"
  echo "python=$PY39 $("$PY39" -c 'import sys; print(sys.version.split()[0])')"
  echo "test=$want_test pins=${RYU_PINS[*]} $SETUPTOOLS_PIN"
  cat "$0" "$ROOT/setup.cfg" "$ROOT/pyproject.toml" | sha256sum
}

up_to_date() {
  [ -f "$STAMP" ] && [ -x "$VENV/bin/ryu-manager" ] && [ "$(cat "$STAMP")" = "$(inputs)" ] &&
    "$VENV/bin/python" -c 'import ryu, wlbridge' >/dev/null 2>&1
}

# A stamp made with --test also satisfies a plain request.
if [ "$want_test" = 0 ] && [ -f "$STAMP" ] && grep -q '^test=1 ' "$STAMP"; then want_test=1; fi

if ! up_to_date; then
  exec 9>"$LOCK"
  flock 9
  if ! up_to_date; then  # somebody else may have built it while we waited
    log "building $VENV with $PY39"
    rm -f "$STAMP"
    if ! { [ -x "$VENV/bin/python" ] && is39 "$VENV/bin/python"; }; then
      rm -rf "$VENV"
      "$PY39" -m venv "$VENV"
    fi
    pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
    pip install "$SETUPTOOLS_PIN" wheel
    pip install --no-build-isolation "${RYU_PINS[@]}"
    # The project: its install_requires pick versions that still support 3.9 (os-ken is only
    # required on >= 3.10); the constraint keeps pip from touching the Ryu pins.
    constraints="$VENV/.ryu-constraints.txt"
    printf '%s\n' "${RYU_PINS[@]}" "$SETUPTOOLS_PIN" >"$constraints"
    pip install -c "$constraints" -e "$ROOT"
    if [ "$want_test" = 1 ]; then pip install -c "$constraints" "${TEST_PKGS[@]}"; fi
    "$VENV/bin/python" -c 'import ryu, wlbridge.compat as c; assert c.FRAMEWORK == "ryu", c.FRAMEWORK'
    inputs >"$STAMP"
    log "ready: $VENV ($("$VENV/bin/python" --version 2>&1), Ryu 4.34)"
  fi
fi

if [ "$print_only" = 1 ]; then echo "$VENV/bin/python"; fi
