#!/usr/bin/env bash
# Write deploy/secrets/dynamic-security.json (the broker's identities and ACLs, passwords hashed)
# from the secrets in .env. Devices enrolled later (`cityops devices add`) are kept when it is
# written again. Run once before `docker compose up`, and after changing a service password.
set -euo pipefail
cd "$(dirname "$0")/.."
set -a; . ./.env; set +a
umask 077
mkdir -p deploy/secrets
out=deploy/secrets/dynamic-security.json
if [ -x .venv/bin/cityops ]; then
  .venv/bin/cityops devices bus-config --out "$out"
else  # the application image has the same command
  docker compose run --rm --no-deps -v "$PWD/deploy/secrets:/out" \
    -e CITYOPS_MQTT_ADMIN_PASSWORD -e CITYOPS_MQTT_INGEST_PASSWORD \
    -e CITYOPS_MQTT_ALERTS_PASSWORD -e CITYOPS_MQTT_SIM_PASSWORD \
    migrate devices bus-config --out /out/dynamic-security.json
fi
# the broker (user mosquitto, uid 1883 in eclipse-mosquitto) saves enrolments into this file
if [ "$(id -u)" = 0 ]; then chown 1883:1883 "$out"; else echo "run: sudo chown 1883:1883 $out"; fi
