#!/bin/sh
# Debian packages the test suite needs beyond the Python venv: stunnel4 (a real TLS peer in front
# of the embedded broker) and the openssl CLI (test certificates). Idempotent and quiet; never
# fails the build: without root or network the TLS tests skip with a clear reason instead.
set -u
missing=""
command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1 || missing="$missing stunnel4"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: missing:$missing (not root or no apt-get); TLS tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 \
        || echo "install-test-deps: could not install$missing; TLS tests will be skipped" >&2
fi
exit 0
