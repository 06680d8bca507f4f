#!/bin/sh
# sample-photos.sh DIR - put a few real photos into DIR.
#
# The photos come from Debian's python3-skimage package (astronaut, chelsea the cat,
# coffee, rocket, motorcycle, page ...), unpacked without installing it. They are
# not committed: Debian is their distribution channel.
set -eu
dir=${1:?usage: sample-photos.sh DIR}
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
deb=$(ls /var/cache/apt/archives/python3-skimage_*_all.deb 2>/dev/null | head -n 1 || true)
if [ -z "$deb" ]; then
    (cd "$tmp" && apt-get download python3-skimage >/dev/null) ||
        { echo "sample-photos: 'apt-get download python3-skimage' failed (run apt-get update?)" >&2; exit 1; }
    deb=$(ls "$tmp"/python3-skimage_*_all.deb)
fi
dpkg -x "$deb" "$tmp/x"
data=$(find "$tmp/x" -type d -path '*skimage/data' | head -n 1)
for f in astronaut.png chelsea.png coffee.png rocket.jpg motorcycle_right.png page.png camera.png \
         hubble_deep_field.jpg color.png logo.png; do
    cp "$data/$f" "$dir/"
done
echo "sample-photos: $(ls "$dir" | wc -l) photos in $dir"
