#!/usr/bin/env bash
# Install every Debian package obs needs to build, run and test. Idempotent and
# quiet: packages already present are skipped, apt runs only when one is missing.
set -euo pipefail

build_pkgs=(make gcc clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config
	    libclang-rt-14-dev libncurses-dev libcurl4-openssl-dev libprotobuf-c-dev protobuf-c-compiler libyaml-dev
	    libnghttp2-dev libjson-c-dev)
test_pkgs=(curl wrk apache2-utils tmux valgrind nghttp2-client openssl
	   python3 python3-uvicorn python3-hypercorn python3-daphne gunicorn
	   python3-starlette python3-fastapi python3-httptools python3-uvloop python3-h11
	   python3-wsproto python3-multipart python3-pytest python3-grpcio prometheus nginx python3-yaml
	   python3-prometheus-client python3-structlog python3-httpx python3-aiohttp
	   libhttp-parser-dev python3-django)

# The test OTLP receiver decodes with the official protos' generated decoder
# (npm @opentelemetry/otlp-transformer, pinned in tests/otlp/package.json).
npm_deps() {
	local dir=tests/otlp
	[ -f "$dir/node_modules/@opentelemetry/otlp-transformer/build/src/generated/root.js" ] && return 0
	command -v npm >/dev/null || return 0	# installed below with Debian's nodejs
	(cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
}
cd "$(dirname "$0")/.."

missing=()
for p in "${build_pkgs[@]}" "${test_pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	missing+=(nodejs npm)
fi
if [ ${#missing[@]} -eq 0 ]; then
	npm_deps
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing packages (${missing[*]}); run as root" >&2
	exit 1
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -qq update >/dev/null
apt-get -qq install -y --no-install-recommends "${missing[@]}" >/dev/null
# nginx is only for `make bench`, which runs its own instance: never leave the
# distribution's service running or enabled.
if [[ " ${missing[*]} " == *" nginx "* ]]; then
	systemctl disable nginx.service >/dev/null 2>&1 || update-rc.d nginx disable >/dev/null 2>&1 || true
	systemctl stop nginx.service >/dev/null 2>&1 || invoke-rc.d nginx stop >/dev/null 2>&1 || true
fi
npm_deps
