#!/usr/bin/env bash
# Debian's SLURM (22.05) for the cluster tests (tests/slurm/): slurmctld, slurmd, slurmdbd with
# MariaDB (job accounting, which `sacct` and submitit need) and munge. Nothing is started or
# configured here: each test session starts a throwaway one-node cluster in a temp folder and
# stops it (tests/slurm/local_cluster.py). Idempotent; needs root (or sudo) for apt. The daemons
# that a package's install script tries to start are not needed: none keeps running here.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
MISSING=""
for pkg in slurm-wlm slurmdbd munge mariadb-server; do
    dpkg -s "$pkg" >/dev/null 2>&1 || MISSING="$MISSING $pkg"
done
if [ -n "$MISSING" ]; then
    echo "[setup_slurm] apt-get install$MISSING"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $MISSING >/dev/null
fi
# a package's postinst may start its daemon where an init system runs: the tests need the ports and
# sockets of their own cluster only, so stop these (by the PID files their packages use)
for pidfile in /run/slurmctld.pid /run/slurmd.pid /run/slurmdbd.pid /run/mysqld/mysqld.pid /run/munge/munged.pid; do
    if [ -s "$pidfile" ]; then $SUDO kill "$(cat "$pidfile")" 2>/dev/null || true; fi
done
echo "[setup_slurm] slurm-wlm $(dpkg-query -W -f='${Version}' slurm-wlm)"
