#!/usr/bin/env bash
# Downloads the public goodbooks-10k data set (Zygmunt Zajac, CC BY-SA 4.0)
# into ./data (or the folder given as $1). Needs internet access; bookrec
# finds ./data by itself afterwards. The current public release has
# 5,976,479 ratings with header user_id,book_id,rating; the loader reads it
# as well as the original 981,756-row release.
set -euo pipefail
dest="${1:-data}"
base="https://raw.githubusercontent.com/zygmuntz/goodbooks-10k/master"
mkdir -p "$dest"
fetch() {
  if command -v curl >/dev/null; then curl -fL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null; then wget -O "$2" "$1"
  else echo "fetch-data: need curl or wget" >&2; exit 1; fi
}
for f in ratings.csv books.csv book_tags.csv tags.csv to_read.csv; do
  if [ -s "$dest/$f" ] || [ -s "$dest/$f.gz" ]; then
    echo "fetch-data: $dest/$f already present"
    continue
  fi
  echo "fetch-data: downloading $f"
  fetch "$base/$f" "$dest/$f.part"
  mv "$dest/$f.part" "$dest/$f"
done
echo "fetch-data: done; data in $dest (license: CC BY-SA 4.0, see https://github.com/zygmuntz/goodbooks-10k)"
