#!/usr/bin/env bash
# Installs the system packages prodcat's local services and tests need, only when they are missing:
# a Java 17+ runtime and Maven (the local Apache Kafka broker is resolved from Maven Central),
# Chromium (the web UI's browser tests, driven by Playwright) and Prometheus (promtool for the alert
# rules, and a real server scraping a worker in the tests).
set -euo pipefail

java_ok() {
  command -v java >/dev/null 2>&1 || return 1
  local v
  v=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
  [ "${v%%.*}" -ge 17 ] 2>/dev/null
}

missing=()
java_ok || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "prodcat needs: ${missing[*]} (Java 17+, Maven, Chromium, Prometheus)." >&2
  echo "Install them with your package manager." >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing ${missing[*]} with apt-get" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
