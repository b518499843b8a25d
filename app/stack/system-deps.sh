#!/usr/bin/env bash
# Installs the OS packages the local stack needs, only if missing: PostgreSQL server, Java 17+, Maven,
# Prometheus / Alertmanager / Pushgateway / postgres-exporter (monitoring).
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
# Monitoring (sfmlops up --with-monitoring): Debian's Prometheus 2.42, Alertmanager 0.25, Pushgateway, postgres-exporter.
for pkg in prometheus prometheus-alertmanager prometheus-pushgateway prometheus-postgres-exporter; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "installing OS packages: ${need[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Debian's postinst would start prometheus & co. as system services on 0.0.0.0: the stack runs its own, on
# loopback, so no service is started by the install (policy-rc.d 101) and any that started is stopped.
POLICY=/usr/sbin/policy-rc.d; ADDED_POLICY=""
if [ ! -e "$POLICY" ]; then printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null; $SUDO chmod 755 "$POLICY"; ADDED_POLICY=1; fi
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
[ -n "$ADDED_POLICY" ] && $SUDO rm -f "$POLICY"
for svc in prometheus prometheus-alertmanager prometheus-pushgateway prometheus-postgres-exporter; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl disable --now "$svc" || true
  fi
done
# Debian starts a default cluster on 5432 where it can; the project runs its own under .local/.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | awk '$4=="online"{print $1, $2}' | while read -r v c; do $SUDO pg_ctlcluster "$v" "$c" stop || true; done
fi
