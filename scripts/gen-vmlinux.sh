#!/usr/bin/env bash
# Regenerate vmlinux/vmlinux.h from the running kernel's BTF. The checked-in
# header is only used for type layouts; CO-RE relocations adapt them at load.
set -euo pipefail
cd "$(dirname "$0")/.."
bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/vmlinux.h.tmp
mv vmlinux/vmlinux.h.tmp vmlinux/vmlinux.h
echo "vmlinux/vmlinux.h: $(wc -l < vmlinux/vmlinux.h) lines from $(uname -r)"
