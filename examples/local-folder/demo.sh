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
extracted="$root/.bk-demo/extracted"
rm -rf "$extracted" && mkdir -p "$extracted"
tar -xzf "$archive" -C "$extracted"
# The archive alone lists every entry: the entry index's lines are inside it, under
# manifest.entries/ (gzip NDJSON beside it holds the same lines). Every file entry must match the
# file GNU tar extracted, in size and sha256.
node -e '
  const { createHash } = require("node:crypto");
  const { readdirSync, readFileSync } = require("node:fs");
  const dir = process.argv[1];
  const sections = readdirSync(`${dir}/manifest.entries`).sort();
  let component;
  let checked = 0;
  for (const section of sections)
    for (const line of readFileSync(`${dir}/manifest.entries/${section}`, "utf8").split("\n")) {
      if (line === "") continue;
      const record = JSON.parse(line);
      if (record.component !== undefined) { component = record.component; continue; }
      if (record.type !== "file") continue;
      const bytes = readFileSync(`${dir}/${component}/${record.path}`);
      const sha256 = createHash("sha256").update(bytes).digest("hex");
      if (bytes.length !== record.size || sha256 !== record.sha256) throw new Error(`${record.path} differs from the entry index in the archive`);
      checked += 1;
    }
  if (checked === 0) throw new Error("the archive lists no files");
  console.log(`the entry index in the archive matches the ${checked} files GNU tar extracted`);
' "$extracted"
echo "restored byte-identically: $(find "$here/sample" -type f | wc -l) files"
echo "archive: $archive (passes gzip -t, extracts with tar -xzf; list it with: tar -tzvf $archive)"
