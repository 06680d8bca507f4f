#!/bin/sh
# emojione.sh DIR - unpack the EmojiOne PNGs of Debian's ruby-gemojione package into
# DIR (once) and print the directory that holds them (.../assets/png).
#
# They are the demo model's evaluation data: an art style it never saw in training.
# Not committed: Debian is their distribution channel (art: EmojiOne, CC BY 4.0 /
# CC BY-SA 4.0 as Debian's copyright file says). Exit 1 when the package cannot be had.
set -eu
dir=${1:?usage: emojione.sh DIR}
png="$dir/x/usr/share/rubygems-integration/all/gems"
found=$(ls -d "$png"/gemojione-*/assets/png 2>/dev/null | head -n 1 || true)
if [ -z "$found" ]; then
    mkdir -p "$dir"
    deb=$(ls /var/cache/apt/archives/ruby-gemojione_*_all.deb "$dir"/ruby-gemojione_*_all.deb \
          2>/dev/null | head -n 1 || true)
    if [ -z "$deb" ]; then
        (cd "$dir" && apt-get download ruby-gemojione >/dev/null 2>&1) ||
            { echo "emojione: 'apt-get download ruby-gemojione' failed (no network, or run apt-get update?)" >&2; exit 1; }
        deb=$(ls "$dir"/ruby-gemojione_*_all.deb | head -n 1)
    fi
    dpkg -x "$deb" "$dir/x"
    found=$(ls -d "$png"/gemojione-*/assets/png 2>/dev/null | head -n 1 || true)
    [ -n "$found" ] || { echo "emojione: no assets/png in $deb" >&2; exit 1; }
fi
echo "$found"
