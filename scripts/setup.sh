#!/usr/bin/env bash
# setup.sh: install every Debian package drover's build, example and tests need (as root).
# Lists live in scripts/deps/*.txt, one package per line; `setup.sh base` installs only base.txt.
# Quiet when it works; when apt fails, its own messages are shown.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/quiet.sh

lists=(scripts/deps/*.txt)
[ "${1:-}" = base ] && lists=(scripts/deps/base.txt)
mapfile -t pkgs < <(cat "${lists[@]}" | sed 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)

missing=()
for p in "${pkgs[@]}"; do
        st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [ "$st" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
        echo "setup: all ${#pkgs[@]} packages present"
        exit 0
fi
if [ "$(id -u)" != 0 ]; then
        echo "setup: missing packages (${missing[*]}); run as root" >&2
        exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
quiet apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 update
quiet apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 install -y --no-install-recommends "${missing[@]}"
echo "setup: done"
