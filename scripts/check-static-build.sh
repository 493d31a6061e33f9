#!/usr/bin/env bash
# Builds the two Linux binaries exactly as the Dockerfile's builder stage does (the Dockerfile
# runs this script), and proves they can run in a `FROM scratch` image:
#
#   - statically linked: no program interpreter (PT_INTERP) and no DT_NEEDED library;
#   - `hostgate --version` and `hostgate-agent --help` run, also chrooted into a directory that
#     holds nothing but the binary (as root), which is what `FROM scratch` gives them;
#   - every path the Dockerfiles COPY from the build context exists.
#
# Static glibc (`-C target-feature=+crt-static` on x86_64-unknown-linux-gnu) rather than musl:
# the gnu target is the only one the project's toolchains can install (no musl std from the
# package registries). glibc's resolver is built in from 2.34, so DNS works with the
# /etc/resolv.conf and /etc/hosts the kubelet mounts; random numbers come from getrandom(2)
# (see below), so not even /dev is needed.
#
# Usage: scripts/check-static-build.sh [--out DIR] [--skip-build]
#   --out DIR      also copy the binaries to DIR (the Dockerfile uses /out)
#   --skip-build   verify binaries built earlier
# Honours CARGO_TARGET_DIR; set CARGO_PROFILE (default dist, the shipped build: Cargo.toml) to
# check another profile.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target="x86_64-unknown-linux-gnu"
profile="${CARGO_PROFILE:-dist}"
out=""
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --skip-build) build=0; shift ;;
    *) echo "usage: $0 [--out DIR] [--skip-build]" >&2; exit 2 ;;
  esac
done

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok:   $*"; }

if [ "$build" = 1 ]; then
  echo "== build ($profile, $target, crt-static)"
  # --target keeps RUSTFLAGS off build scripts and proc macros, and the artifacts apart from
  # ordinary builds (target/<triple>/...).
  # getrandom: call getrandom(2) through the static libc. Its default finds the function with
  # dlsym(), which a static binary cannot do, and falls back to /dev/urandom.
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
    cargo build --locked --profile "$profile" --target "$target" \
      -p hostgate --bin hostgate -p hostgate-agent --bin hostgate-agent \
      --bin containerd-shim-hostgate-v1
fi
profile_dir="$profile"
[ "$profile" = dev ] && profile_dir=debug
bin_dir="${CARGO_TARGET_DIR:-$root/target}/$target/$profile_dir"

echo "== static linking"
for bin in hostgate hostgate-agent containerd-shim-hostgate-v1; do
  path="$bin_dir/$bin"
  if [ ! -x "$path" ]; then
    fail "$path was not built"
    continue
  fi
  if command -v file >/dev/null; then
    echo "      $(file -b "$path" | cut -c1-160)"
  fi
  if readelf -lW "$path" | grep -q 'Requesting program interpreter\|INTERP'; then
    fail "$bin has a program interpreter: $(readelf -lW "$path" | grep -o 'interpreter: [^]]*')"
  else
    ok "$bin: no PT_INTERP"
  fi
  needed="$(readelf -dW "$path" | grep '(NEEDED)' || true)"
  if [ -n "$needed" ]; then
    fail "$bin needs shared libraries:"$'\n'"$needed"
  else
    ok "$bin: no DT_NEEDED"
  fi
done

echo "== run"
if version="$("$bin_dir/hostgate" --version 2>&1)"; then ok "hostgate --version: $version"; else fail "hostgate --version: $version"; fi
if "$bin_dir/hostgate-agent" --help >/dev/null 2>&1; then
  ok "hostgate-agent --help: $("$bin_dir/hostgate-agent" --help | head -n1)"
else
  fail "hostgate-agent --help failed"
fi
if "$bin_dir/hostgate-agent" sync --help >/dev/null 2>&1; then ok "hostgate-agent sync --help"; else fail "hostgate-agent sync --help failed"; fi

# An empty root with only the binary: no libc, no loader, no /etc, as in `FROM scratch`.
if [ "$(id -u)" = 0 ] && command -v chroot >/dev/null; then
  jail="$(mktemp -d)"
  trap 'rm -rf "$jail"' EXIT
  chmod 0755 "$jail"
  cp "$bin_dir/hostgate" "$bin_dir/hostgate-agent" "$bin_dir/containerd-shim-hostgate-v1" "$jail/"
  if v="$(chroot --userspec=65532:65532 "$jail" /hostgate --version 2>&1)"; then
    ok "in an empty root as 65532: hostgate --version: $v"
  else
    fail "in an empty root: hostgate --version: $v"
  fi
  if chroot --userspec=65532:65532 "$jail" /hostgate-agent --help >/dev/null 2>&1; then
    ok "in an empty root as 65532: hostgate-agent --help"
  else
    fail "in an empty root: hostgate-agent --help"
  fi
  # The shim's start action runs there: with no bundle it refuses in one line and exits 1.
  shim_status=0
  shim_out="$(TTRPC_ADDRESS=/none chroot "$jail" /containerd-shim-hostgate-v1 \
    -namespace k8s.io -id probe -address /none start 2>&1)" || shim_status=$?
  if [ "$shim_status" = 1 ] && printf '%s' "$shim_out" | grep -q '^hostgate refused'; then
    ok "in an empty root: containerd-shim-hostgate-v1 start refuses cleanly: $shim_out"
  else
    fail "in an empty root: containerd-shim-hostgate-v1 start: status $shim_status: $shim_out"
  fi
  # The engine works there too: keygen writes to the (writable) root, check reads it back.
  if chroot "$jail" /hostgate keygen --out /keys >/dev/null 2>&1 && ls "$jail"/keys/*.pub >/dev/null 2>&1; then
    ok "in an empty root: hostgate keygen"
  else
    fail "in an empty root: hostgate keygen"
  fi
  # The webhook serves TLS and answers a captured AdmissionReview from there, as user 65532.
  sample=tests/data/admissionreview/pod-create-hostprocess-valid.validating.json
  if command -v curl >/dev/null && [ -d policies ] && [ -f "$sample" ]; then
    cp -r policies "$jail/policies"
    chmod -R a+rX "$jail/policies"
    mkdir -m 0777 "$jail/tls"
    # Port 0: the kernel picks a free port, which the webhook logs.
    timeout 30 chroot --userspec=65532:65532 "$jail" /hostgate serve --tls-self-signed \
      --tls-self-signed-dir /tls --policies /policies --bind-address 127.0.0.1 \
      --secure-port 0 --log-format json >"$jail/serve.log" 2>&1 &
    serve_pid=$!
    ready=""
    port=""
    for _ in $(seq 1 80); do
      port="$(grep -o '"addr":"127.0.0.1:[0-9]*"' "$jail/serve.log" | head -n1 | grep -o '[0-9]*"$' | tr -d '"' || true)"
      if [ -n "$port" ] && [ -f "$jail/tls/ca.crt" ] \
        && [ "$(curl -s --cacert "$jail/tls/ca.crt" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/readyz")" = 200 ]; then
        ready=1
        break
      fi
      sleep 0.25
    done
    review="$(curl -s --cacert "$jail/tls/ca.crt" -H 'Content-Type: application/json' \
      --data-binary "@$sample" \
      "https://127.0.0.1:$port/validate" || true)"
    kill "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
    if [ -n "$ready" ] && printf '%s' "$review" | grep -q '"kind":"AdmissionReview"'; then
      ok "in an empty root as 65532: hostgate serve answered /readyz and /validate over TLS"
    else
      fail "in an empty root: hostgate serve did not answer: $(tail -n 3 "$jail/serve.log")"
    fi
  else
    echo "skip: the empty-root webhook run needs curl, policies/ and $sample"
  fi
else
  echo "skip: the empty-root run needs root and chroot"
fi

if [ -n "$out" ]; then
  mkdir -p "$out"
  cp "$bin_dir/hostgate" "$bin_dir/hostgate-agent" "$bin_dir/containerd-shim-hostgate-v1" "$out/"
  ok "copied to $out"
fi

echo "== Dockerfile sources"
for dockerfile in Dockerfile Dockerfile.windows; do
  [ -f "$dockerfile" ] || continue
  # COPY/ADD lines that take from the build context (not --from=stage), joined over `\`.
  while read -r src; do
    [ -z "$src" ] && continue
    if [ -e "$root/$src" ]; then ok "$dockerfile: COPY $src"; else fail "$dockerfile: COPY $src: no such path"; fi
  done < <(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$dockerfile" \
             | grep -E '^[[:space:]]*(COPY|ADD)[[:space:]]' | grep -v -- '--from=' \
             | sed -E 's/^[[:space:]]*(COPY|ADD)[[:space:]]+//; s/--[a-z-]+=[^ ]+[[:space:]]+//g' \
             | awk '{ for (i = 1; i < NF; i++) print $i }')
done
if [ -f Dockerfile ] && grep -q 'scripts/check-static-build.sh' Dockerfile; then
  ok "Dockerfile builds with this script"
elif [ -f Dockerfile ]; then
  fail "Dockerfile does not build with scripts/check-static-build.sh"
fi

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "static build verified"
