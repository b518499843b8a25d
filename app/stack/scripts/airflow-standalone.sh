#!/usr/bin/env bash
# `airflow standalone` for the local stack, minus the log servers.
#
# `airflow standalone` starts the scheduler and triggerer with their log servers, which Airflow 2.10 binds
# to every interface ([::] or 0.0.0.0, not configurable). On one machine the webserver reads task logs from
# the shared AIRFLOW_HOME/logs folder anyway, so this runs the same three components with
# --skip-serve-logs and the webserver on AIRFLOW__WEBSERVER__WEB_SERVER_HOST (loopback). Like standalone it
# migrates the metadata database and creates an `admin` user whose password it writes to
# $AIRFLOW_HOME/standalone_admin_password.txt. Stopped as one process group by `sfmlops down`.
set -euo pipefail
: "${AIRFLOW_HOME:?AIRFLOW_HOME must be set}"

airflow db migrate
password_file="$AIRFLOW_HOME/standalone_admin_password.txt"
if [ ! -s "$password_file" ]; then
  (umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(18))' > "$password_file")
fi
if ! airflow users list 2>/dev/null | grep -qw admin; then
  airflow users create --username admin --password "$(cat "$password_file")" --role Admin \
    --firstname Local --lastname Admin --email admin@localhost >/dev/null
fi
echo "airflow: user admin, password in $password_file"

airflow scheduler --skip-serve-logs &
airflow triggerer --skip-serve-logs &
airflow webserver &
# This shell stays the parent (its command line is how `sfmlops` recognises the service): when one
# component exits, stop the others and fail, so `sfmlops status` shows Airflow as down.
wait -n || true
echo "airflow: a component exited; stopping the others" >&2
kill $(jobs -p) 2>/dev/null || true
wait
exit 1
