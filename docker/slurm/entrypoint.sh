#!/bin/sh
# Start munged with the key shared through the `munge` volume, then run the daemon named by $1
# in the foreground: slurmctld, slurmd, slurmdbd, or any other command (the orchestrator image
# runs `orchestrate ...` this way). slurmdbd starts first (compose's depends_on) and alone
# creates the key; everyone else waits for it, so no two containers write different keys.
set -eu
KEY=/etc/munge/munge.key
if [ "${1:-}" = slurmdbd ] && [ ! -s "$KEY" ]; then
    dd if=/dev/urandom bs=1 count=1024 of="$KEY.tmp" 2>/dev/null
    mv "$KEY.tmp" "$KEY"
fi
waited=0
while [ ! -s "$KEY" ]; do
    [ "$waited" -lt 120 ] || { echo "no munge key in /etc/munge after 120 s" >&2; exit 1; }
    sleep 1
    waited=$((waited + 1))
done
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
