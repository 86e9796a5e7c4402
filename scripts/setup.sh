#!/usr/bin/env bash
# Installs what runcell needs on a fresh Debian machine: bubblewrap (the sandbox) and the npm
# packages. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/bwrap ] || missing+=(bubblewrap)
[ -x /usr/bin/setpriv ] || missing+=(util-linux)
[ -x /usr/bin/python3 ] || missing+=(python3)
[ -x /usr/sbin/mkfs.ext4 ] || missing+=(e2fsprogs)
# Kernels and outputs: Jupyter kernels (ipykernel is the tested one), figures, DataFrames, .ipynb.
# jupyter_server is the peer `npm run bench` compares against.
for module in ipykernel:python3-ipykernel matplotlib:python3-matplotlib pandas:python3-pandas nbformat:python3-nbformat jupyter_server:python3-jupyter-server; do
  /usr/bin/python3 -c "import ${module%%:*}" 2>/dev/null || missing+=("${module#*:}")
done
# Java kernels and programs: any JDK under /usr/lib/jvm with jdk.jshell; Debian's if there is none.
ls /usr/lib/jvm/*/bin/javac >/dev/null 2>&1 || missing+=(openjdk-17-jdk-headless)
# One-shot programs in C, C++ and Rust (the sandbox sees /usr only: Debian's, not rustup's).
[ -x /usr/bin/gcc ] || missing+=(gcc)
[ -x /usr/bin/g++ ] || missing+=(g++)
[ -x /usr/bin/rustc ] || missing+=(rustc)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "runcell setup: please install: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "runcell setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
