#!/usr/bin/env bash
# Records face-api.js 1.7.15 reference outputs in headless Chromium (tfjs CPU backend, float32, deterministic)
# into tests/Deid.Models.Tests/FaceApi/Reference/faceapi-1.7.15-chromium.json, which the C# parity tests read.
# The tests never run this; rerun it only to refresh the reference:
#
#   scripts/faceapi-reference/run.sh            # needs npm (registry access), python3, chromium
#   CHROMIUM=/path/to/chrome OUT=/tmp/x.json scripts/faceapi-reference/run.sh
#   DEBUG=1 OUT=/tmp/debug.json scripts/faceapi-reference/run.sh   # + network inputs of the faces.jpg crops
#
# It npm-packs @vladmandic/face-api@1.7.15 into a temp dir (its browser bundle includes tfjs), serves that,
# models/face-api and the shared golden images from a throwaway local HTTP server (server.py), opens page.html
# in headless Chromium, and the page POSTs its results back; server.py rounds floats to 6 significant digits.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
chromium="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome)}"
images="${IMAGES:-$repo/../shared/golden/face-api/images}"
[ -d "$images" ] || images=/work/shared/golden/face-api/images
out="${OUT:-$repo/tests/Deid.Models.Tests/FaceApi/Reference/faceapi-1.7.15-chromium.json}"
timeout_s="${TIMEOUT:-300}"

tmp="$(mktemp -d)"
server_pid=""; chrome_pid=""
cleanup() {
  # Chromium's helpers keep writing to the profile for a moment; let it exit before removing the temp dir.
  if [ -n "$chrome_pid" ]; then kill "$chrome_pid" 2>/dev/null || true; wait "$chrome_pid" 2>/dev/null || true; fi
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$tmp" 2>/dev/null || { sleep 1; rm -rf "$tmp"; }
}
trap cleanup EXIT

(cd "$tmp" && npm pack --silent @vladmandic/face-api@1.7.15 >/dev/null && tar xzf vladmandic-face-api-1.7.15.tgz)
mkdir -p "$(dirname "$out")"

port_file="$tmp/port"
python3 "$here/server.py" --page "$here/page.html" --dist "$tmp/package/dist" --models "$repo/models/face-api" \
  --images "$images" --out "$out" --port-file "$port_file" --timeout "$timeout_s" &
server_pid=$!
for _ in $(seq 100); do [ -s "$port_file" ] && break; sleep 0.1; done
port="$(cat "$port_file")"

# Root in a container needs --no-sandbox; the tfjs CPU backend needs no GPU. The software canvas is what
# face-api's browser path (drawImage into the square input canvas) ran on when the reference was made.
"$chromium" --headless=new --no-sandbox --disable-gpu --no-first-run --no-default-browser-check \
  --user-data-dir="$tmp/profile" --remote-debugging-port=0 "http://127.0.0.1:$port/page.html${DEBUG:+?debug=1}" \
  >"$tmp/chrome.log" 2>&1 &
chrome_pid=$!

if ! wait "$server_pid"; then
  server_pid=""
  echo "face-api reference run failed; chromium log:" >&2; grep -v dbus "$tmp/chrome.log" | tail -n 30 >&2
  exit 1
fi
server_pid=""
echo "wrote $out ($(wc -c <"$out") bytes)"
