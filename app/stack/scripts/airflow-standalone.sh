#!/usr/bin/env bash
# `airflow standalone` for the local stack (Airflow 3), minus the log servers.
#
# Airflow 3 runs four components: api-server (UI, public REST API /api/v2, Execution API /execution that
# task processes report to), scheduler (LocalExecutor), dag-processor and triggerer. `airflow standalone`
# starts them with the scheduler's and triggerer's log servers, which bind every interface with no setting
# for the host; on one machine the api-server reads task logs from AIRFLOW_HOME/logs anyway, so this runs
# the same components with --skip-serve-logs and the api-server on AIRFLOW__API__HOST (loopback).
#
# Auth: Airflow 3's simple auth manager (the default; FAB is not installed). The user `admin` (role admin,
# AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS) gets a random password written once to
# AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE as {"admin": "<password>"}; REST clients exchange it
# for a JWT at POST /auth/token and send `Authorization: Bearer <token>`. All components share one JWT
# signing secret and one API secret key, generated once under $AIRFLOW_HOME (mode 600), so the tokens the
# scheduler issues to task processes are accepted by the api-server's Execution API.
# Stopped as one process group by `sfmlops down`.
set -euo pipefail
: "${AIRFLOW_HOME:?AIRFLOW_HOME must be set}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE must be set}"

secret() {  # secret FILE: a random token kept in FILE (created once, readable by the owner only)
  if [ ! -s "$1" ]; then
    (umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(32))' > "$1")
  fi
  cat "$1"
}
AIRFLOW__API_AUTH__JWT_SECRET="$(secret "$AIRFLOW_HOME/jwt_secret")"
AIRFLOW__API__SECRET_KEY="$(secret "$AIRFLOW_HOME/api_secret_key")"
export AIRFLOW__API_AUTH__JWT_SECRET AIRFLOW__API__SECRET_KEY

passwords="$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
if [ ! -s "$passwords" ]; then
  (umask 077 && python -c 'import json, secrets; print(json.dumps({"admin": secrets.token_urlsafe(18)}))' > "$passwords")
fi
echo "airflow: user admin, password in $passwords"

airflow db migrate

airflow scheduler --skip-serve-logs &
airflow dag-processor &
airflow triggerer --skip-serve-logs &
airflow api-server --host "${AIRFLOW__API__HOST:?}" --port "${AIRFLOW__API__PORT:?}" --workers 1 &
# This shell stays the parent (its command line is how `sfmlops` recognises the service): when one
# component exits, stop the others and fail, so `sfmlops status` shows Airflow as down.
wait -n || true
echo "airflow: a component exited; stopping the others" >&2
kill $(jobs -p) 2>/dev/null || true
wait
exit 1
