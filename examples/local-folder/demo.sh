#!/usr/bin/env bash
# Backs up the embedded sample tree (HAProxy config, kubeadm config, a CA certificate, InfluxDB
# line protocol) into .bk-demo/backups with the bk command, verifies it, restores it into
# .bk-demo/restored and shows that every file came back byte-identical.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bk() { node "$root/packages/cli/dist/bin.js" --config "$here/bk.config.json" "$@"; }
restored="$root/.bk-demo/restored"
rm -rf "$restored"

echo "== bk backup" >&2
bk backup
name="$(bk ls --json | node -e 'const l = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(l.backups.at(-1).name)')"
archive="$root/.bk-demo/backups/$name.tar.gz"

echo "== bk verify $name" >&2
bk verify "$name"

echo "== bk restore $name --to .bk-demo/restored" >&2
bk restore "$name" --to "$restored"

echo "== compare" >&2
diff -r "$here/sample" "$restored"
gzip -t "$archive"
tar -tzf "$archive" > /dev/null
echo "restored byte-identically: $(find "$here/sample" -type f | wc -l) files"
echo "archive: $archive (passes gzip -t; list it with: tar -tzvf $archive)"
