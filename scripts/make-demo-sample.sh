#!/usr/bin/env bash
# Builds the demo input from material Debian ships (no third-party video in the repo): a real face photo
# from opencv-doc, animated with a slow pan/zoom and sway so detection, tracking and paste-back all move,
# plus a generated audio track so the demo also shows audio being carried through untouched.
set -euo pipefail
out="${1:-samples/demo.mp4}"
photo=/usr/share/doc/opencv-doc/opencv4/html/face_swapped.jpg
if [ ! -f "$photo" ]; then
  echo "error: $photo is missing; install Debian's opencv-doc (make setup does)" >&2
  exit 1
fi
[ -s "$out" ] && [ "$out" -nt "$0" ] && { echo "demo input: $out (already built)"; exit 0; }
mkdir -p "$(dirname "$out")"
tmp="$(dirname "$out")/.$(basename "$out").tmp.mp4"
trap 'rm -f "$tmp"' EXIT
ffmpeg -hide_banner -nostdin -v error -y \
  -loop 1 -framerate 25 -i "$photo" \
  -f lavfi -i "sine=frequency=220:beep_factor=3:sample_rate=44100" \
  -filter_complex "[0:v]scale=1280:1280,zoompan=z='1.15+0.12*sin(2*PI*on/150)':x='iw/2-(iw/zoom/2)+60*sin(2*PI*on/90)':y='ih/2-(ih/zoom/2)+30*sin(2*PI*on/110)':d=1:s=640x640:fps=25,format=yuv420p[v]" \
  -map "[v]" -map 1:a -t 8 -c:v libx264 -crf 20 -preset veryfast -c:a aac -b:a 96k -movflags +faststart "$tmp"
mv "$tmp" "$out"
echo "demo input: $out"
