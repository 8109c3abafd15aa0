#!/bin/sh
# Installs the Debian packages Shimmy needs and that are missing.
# Usage: scripts/deps.sh run|test
# "run" is what building and running shimmyd needs; "test" adds the real
# peers (mosquitto, paho) and tools the test suite drives.
set -eu

RUN_PKGS="build-essential cmake pkg-config libssl-dev libwebsockets-dev"
TEST_PKGS="$RUN_PKGS clang libclang-rt-14-dev libcmocka-dev mosquitto mosquitto-clients
libpaho-mqtt-dev python3 python3-paho-mqtt iproute2 procps librdkafka-dev gnuplot-nox"

case "${1:-}" in
  run) pkgs=$RUN_PKGS ;;
  test) pkgs=$TEST_PKGS ;;
  *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
