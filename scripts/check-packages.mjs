#!/usr/bin/env node
// Checks what every published package (packages/*, not private) must carry: ESM (`"type":
// "module"`), the MIT `license` field, the LICENSE file identical to the repository's and listed
// in `files`, and a `repository` field whose `directory` is the package's own folder.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const license = readFileSync(join(root, 'LICENSE'), 'utf8');
const problems = [];
let checked = 0;
for (const folder of readdirSync(join(root, 'packages'))) {
  const dir = join(root, 'packages', folder);
  if (!existsSync(join(dir, 'package.json'))) continue;
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  if (manifest.private) continue;
  checked += 1;
  const name = manifest.name;
  if (manifest.type !== 'module') problems.push(`${name}: "type" must be "module" (the packages are ESM)`);
  if (manifest.license !== 'MIT') problems.push(`${name}: "license" must be "MIT"`);
  const licenseFile = join(dir, 'LICENSE');
  if (!existsSync(licenseFile) || readFileSync(licenseFile, 'utf8') !== license)
    problems.push(`${name}: LICENSE must be a copy of the repository's LICENSE`);
  if (!manifest.files?.includes('LICENSE')) problems.push(`${name}: "files" must list LICENSE`);
  const repository = manifest.repository;
  if (typeof repository?.url !== 'string' || repository.directory !== `packages/${folder}`)
    problems.push(`${name}: "repository" must have a "url" and "directory": "packages/${folder}"`);
}
for (const problem of problems) process.stderr.write(`${problem}\n`);
if (problems.length > 0) process.exit(1);
process.stderr.write(`package metadata: ${checked} published packages checked\n`);
