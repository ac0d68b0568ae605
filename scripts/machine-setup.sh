#!/usr/bin/env bash
# The machine's parts that Ferry's tests use, beside the Python packages `make setup` installs:
#   PostgreSQL (server running on 127.0.0.1:5432) and its client psql (the sql bundle format),
#   Redis (running on 127.0.0.1:6379), Debian's Chromium (the page's browser tests),
#   DejaVu fonts (Greek in PDFs), Prometheus and promtool (tests/deploy), Node.js with npm and
#   npx (axe-core for the page tests, buf for make buf-lint), LibreOffice Calc without a GUI
#   (a Greek CSV export is converted headless and must keep its Greek).
#
# Called by `.ci/run` and by `make test`. As root with apt-get it installs what is missing and
# starts PostgreSQL and Redis when they are installed but down. Otherwise it installs nothing and
# prints what is missing and how to get it. It exits 0 either way: the test suite then decides
# (under CI=true a missing part fails the run; elsewhere its tests are skipped).
# Quick when everything is there: no apt-get, no network.
set -uo pipefail

can_install=""
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  can_install=1
fi

apt_updated=""
missing=()

# apt_install PACKAGE... : install Debian packages (once per run: one apt-get update).
apt_install() {
  if [ -z "$apt_updated" ]; then
    apt-get update -qq || return 1
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# need CHECK PACKAGE WHAT : make sure CHECK succeeds, installing PACKAGE (Debian) if it can.
need() {
  local check="$1" package="$2" what="$3"
  if eval "$check" >/dev/null 2>&1; then
    return 0
  fi
  if [ -n "$can_install" ]; then
    echo "machine-setup: installing $package ($what)"
    if apt_install "$package" >/dev/null && eval "$check" >/dev/null 2>&1; then
      return 0
    fi
    echo "machine-setup: could not install $package" >&2
  fi
  missing+=("$what: Debian package '$package'")
}

need "command -v psql" postgresql-client "PostgreSQL client psql"
need "test -x /usr/bin/chromium" chromium "Chromium for the browser tests"
need "test -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf" fonts-dejavu-core "DejaVu fonts"
need "command -v npx" npm "Node.js, npm and npx (axe-core for the browser tests, make buf-lint)"
need "command -v soffice" libreoffice-calc-nogui "LibreOffice Calc (headless) for the Greek CSV test"

# Debian's prometheus package starts a system Prometheus on :9090 when installed; a policy-rc.d
# that says "no" keeps it from starting (the tests run their own on free ports).
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  made_policy=""
  if [ -n "$can_install" ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  need "command -v promtool && command -v prometheus" prometheus "Prometheus and promtool"
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

# PostgreSQL and Redis: start them when they are installed but down (never install servers).
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  if [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "machine-setup: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
    for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
  fi
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q >/dev/null 2>&1; then
  missing+=("PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth): install Debian's 'postgresql' and start it")
fi

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
if command -v redis-server >/dev/null 2>&1 && ! redis_up; then
  if [ -d /var/lib/redis ] && [ -w /var/lib/redis ]; then
    echo "machine-setup: starting Redis"
    mkdir -p /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 20); do redis_up && break; sleep 0.5; done
  fi
fi
if ! redis_up; then
  missing+=("Redis on 127.0.0.1:6379: install Debian's 'redis-server' and start it")
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "machine-setup: missing on this machine (tests that need them are skipped, or fail under CI=true):" >&2
  for item in "${missing[@]}"; do echo "  - $item" >&2; done
  if [ -z "$can_install" ]; then
    echo "  Run this script as root on Debian (sudo bash scripts/machine-setup.sh) to install them." >&2
  fi
fi
exit 0
