#!/bin/sh
# Start munged with the key shared through the `munge` volume (the first container to start
# creates it), then run the daemon named by $1 in the foreground: slurmctld, slurmd, slurmdbd,
# or any other command (the orchestrator image runs `orchestrate ...` this way).
set -eu
KEY=/etc/munge/munge.key
if [ ! -s "$KEY" ]; then
    dd if=/dev/urandom bs=1 count=1024 of="$KEY.tmp" 2>/dev/null && mv "$KEY.tmp" "$KEY" || true
fi
chown munge:munge /etc/munge "$KEY" 2>/dev/null || true
chmod 400 "$KEY"
mkdir -p /run/munge && chown munge:munge /run/munge
runuser -u munge -- munged --force
case "${1:-}" in
    slurmctld) exec slurmctld -D -i ;;
    slurmd) exec slurmd -D -N "$(hostname)" ;;
    slurmdbd) exec slurmdbd -D ;;
    *) exec "$@" ;;
esac
