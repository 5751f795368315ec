#!/usr/bin/env bash
# Re-fetch the vendored Chart.js from the npm registry (`npm pack`) and check it against the pinned sha256.
# Usage: scripts/fetch-chartjs.sh          (writes segmentation/ui/static/chart.umd.min.js)
#        scripts/fetch-chartjs.sh --check  (only verifies the committed copy against a fresh download)
set -euo pipefail
VERSION=4.5.1
SHA256=48444a82d4edcb5bec0f1965faacdde18d9c17db3063d042abada2f705c9f54a  # dist/chart.umd.min.js
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET="$ROOT/segmentation/ui/static/chart.umd.min.js"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "chart.js@$VERSION" >/dev/null && tar xzf "chart.js-$VERSION.tgz")
echo "$SHA256  $WORK/package/dist/chart.umd.min.js" | sha256sum --check --quiet
if [ "${1:-}" = "--check" ]; then
  echo "$SHA256  $TARGET" | sha256sum --check --quiet
  echo "chart.js $VERSION: the committed copy matches the registry package"
else
  cp "$WORK/package/dist/chart.umd.min.js" "$TARGET"
  cp "$WORK/package/LICENSE.md" "$ROOT/segmentation/ui/static/chart.js.LICENSE.md"
  echo "chart.js $VERSION written to $TARGET (sha256 $SHA256)"
fi
