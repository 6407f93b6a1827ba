import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built `bk` command; the end-to-end tests run it as users do. */
export const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

export function assertBuilt(): void {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`pnpm build\` before the CLI tests.`);
}

export interface BkRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface BkProcess {
  child: ChildProcess;
  done: Promise<BkRun>;
}

/** Starts `node dist/bin.js …args`; `done` settles when it exits. */
export function startBk(
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): BkProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? tmpdir(),
    env: { ...process.env, BK_DEBUG: '', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const done = new Promise<BkRun>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

/** Runs `bk` to completion. */
export function runBk(
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<BkRun> {
  return startBk(args, options).done;
}

/** Runs `bk --json …args` and parses stdout, which must be exactly one JSON document. */
export async function runBkJson<T = unknown>(
  args: string[],
  options: { cwd?: string } = {},
): Promise<BkRun & { json: T }> {
  const result = await runBk(['--json', ...args], options);
  let json: T;
  try {
    json = JSON.parse(result.stdout) as T;
  } catch {
    throw new Error(
      `bk --json ${args.join(' ')} printed no single JSON document:\n${result.stdout}\n${result.stderr}`,
    );
  }
  return { ...result, json };
}

const created: string[] = [];

/** A fresh temporary directory, removed by {@link removeTempDirs}. */
export async function tempDir(label: string): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), `bk-cli-${label}-`));
  created.push(directory);
  return directory;
}

export async function removeTempDirs(): Promise<void> {
  await Promise.all(created.splice(0).map((directory) => rm(directory, { recursive: true, force: true })));
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Every file, directory and link under `root`, by relative path: `sha256 <hex>` for files,
 * `-> <target>` for links, `dir` for directories.
 */
export async function describeTree(root: string): Promise<Record<string, string>> {
  const tree: Record<string, string> = {};
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    const absolute = join(entry.parentPath, entry.name);
    const path = absolute.slice(root.length + 1);
    if (entry.isSymbolicLink()) tree[path] = `-> ${await readlink(absolute)}`;
    else if (entry.isDirectory()) tree[path] = 'dir';
    else tree[path] = `sha256 ${sha256(await readFile(absolute))}`;
  }
  return tree;
}

export function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

/** Polls until `check` returns true, or fails after `timeoutMs`. */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
