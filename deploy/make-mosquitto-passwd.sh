#!/usr/bin/env bash
# Write deploy/secrets/passwd (Mosquitto password file) from the secrets in .env.
set -euo pipefail
cd "$(dirname "$0")/.."
set -a; . ./.env; set +a
mkdir -p deploy/secrets
umask 077
: > deploy/secrets/passwd
for pair in "cityops-admin:$CITYOPS_MQTT_ADMIN_PASSWORD" "cityops-ingest:$CITYOPS_MQTT_INGEST_PASSWORD" \
            "cityops-alerts:$CITYOPS_MQTT_ALERTS_PASSWORD" "cityops-sim:$CITYOPS_MQTT_SIM_PASSWORD"; do
  user="${pair%%:*}"; pass="${pair#*:}"
  [ -n "$pass" ] || { echo "missing password for $user in .env" >&2; exit 1; }
  mosquitto_passwd -b deploy/secrets/passwd "$user" "$pass"
done
echo "wrote deploy/secrets/passwd"
