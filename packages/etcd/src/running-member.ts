import { spawn } from 'node:child_process';
import { lstat, readdir, readFile, readlink, realpath } from 'node:fs/promises';
import { isAbsolute, join, resolve, sep } from 'node:path';
import { ConflictError } from '@bk/core';

/** How a running member was found on a data dir. */
export interface RunningMember {
  /** The data dir that is in use (as given). */
  dataDir: string;
  /** The process that uses it, when one could be named (from `/proc`). */
  pid?: number;
  /** That process's command line, shortened. */
  command?: string;
  /** What gave it away. */
  evidence: string;
}

/**
 * The data dir of a running etcd member was the restore target. Nothing was changed: stop the
 * member first (or restore into a new data dir). Its code is `BK_CONFLICT`, like every refusal
 * to replace existing data.
 */
export class EtcdMemberRunningError extends ConflictError {
  readonly dataDir: string;
  readonly pid: number | undefined;

  constructor(member: RunningMember) {
    const who =
      member.pid === undefined
        ? 'a running etcd member'
        : `a running process (pid ${member.pid}${member.command ? `: ${member.command}` : ''})`;
    super(
      member.dataDir,
      `etcd data dir "${member.dataDir}" is in use by ${who}: ${member.evidence}. Nothing was changed. Stop that etcd member (and keep it stopped) before restoring over its data dir, or restore into a new data dir and point the member at it.`,
    );
    this.name = 'EtcdMemberRunningError';
    this.dataDir = member.dataDir;
    this.pid = member.pid;
  }
}

/** The exit code asked of `flock` for "the lock is held". */
const LOCK_HELD = 75;

/**
 * Tries a shared, non-blocking `flock` on `file` with util-linux `flock(1)` (Node has no flock
 * without a native addon). etcd's bbolt backend holds an exclusive flock on `member/snap/db`
 * as long as the member runs; the lock is released at once when we get it.
 * Returns `true` when it is held, `false` when free, `undefined` when this cannot tell
 * (no `flock` command, no permission).
 */
function lockHeld(file: string): Promise<boolean | undefined> {
  return new Promise((done) => {
    const child = spawn(
      'flock',
      ['--shared', '--nonblock', '--conflict-exit-code', String(LOCK_HELD), file, 'true'],
      {
        stdio: 'ignore',
      },
    );
    child.on('error', () => done(undefined));
    child.on('close', (code) => done(code === LOCK_HELD ? true : code === 0 ? false : undefined));
  });
}

/** The value of `--data-dir` (or `ETCD_DATA_DIR`) an etcd command line runs with, if any. */
function dataDirArgument(argv: string[], environment: string[]): string | undefined {
  for (let index = 1; index < argv.length; index += 1) {
    const argument = argv[index]!;
    const match = /^--?data-dir(?:=(.*))?$/.exec(argument);
    if (match) return match[1] ?? argv[index + 1];
  }
  const variable = environment.find((line) => line.startsWith('ETCD_DATA_DIR='));
  return variable?.slice('ETCD_DATA_DIR='.length);
}

async function canonical(path: string): Promise<string> {
  return realpath(path).catch(() => resolve(path));
}

/** Processes (other than this one) whose etcd command line names `dir`, or that hold files open inside it. */
async function processUsing(dir: string): Promise<RunningMember | undefined> {
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name) && Number(name) !== process.pid);
  } catch {
    return undefined; // no /proc (not Linux)
  }
  const inside = (path: string) => path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
  for (const pid of pids) {
    const base = join('/proc', pid);
    let argv: string[];
    try {
      argv = (await readFile(join(base, 'cmdline'), 'utf8')).split('\0').filter((part) => part !== '');
    } catch {
      continue; // gone, or not ours to read
    }
    const command = argv.join(' ').slice(0, 160);
    const program = argv[0]?.split('/').pop() ?? '';
    // `etcd`, `etcd-3.4`…, not `etcdctl`/`etcdutl`.
    if (/^etcd(?:$|[-_.\d])/.test(program)) {
      const environment = await readFile(join(base, 'environ'), 'utf8').then(
        (text) => text.split('\0'),
        () => [],
      );
      const given = dataDirArgument(argv, environment);
      if (given !== undefined) {
        const cwd = await readlink(join(base, 'cwd')).catch(() => undefined);
        const absolute = isAbsolute(given) ? given : cwd ? join(cwd, given) : undefined;
        if (absolute !== undefined && inside(await canonical(absolute))) {
          return {
            dataDir: dir,
            pid: Number(pid),
            command,
            evidence: `it runs with --data-dir ${given}`,
          };
        }
      }
    }
    let fds: string[];
    try {
      fds = await readdir(join(base, 'fd'));
    } catch {
      continue;
    }
    for (const fd of fds) {
      const target = await readlink(join(base, 'fd', fd)).catch(() => undefined);
      if (target !== undefined && inside(target)) {
        return { dataDir: dir, pid: Number(pid), command, evidence: `it holds "${target}" open` };
      }
    }
  }
  return undefined;
}

/**
 * Looks for a running etcd member on `dataDir`, without changing anything in it: first the
 * exclusive lock a live member holds on `member/snap/db` (a non-blocking `flock` check), then
 * `/proc` for an etcd process started with that `--data-dir` or any process holding a file
 * open inside it. Works for members in containers on the same host as well (the lock is on the
 * file); a member on another host is not seen.
 *
 * @returns the member found, or `undefined` when none is.
 */
export async function findRunningMember(dataDir: string): Promise<RunningMember | undefined> {
  const dir = await canonical(dataDir);
  const database = join(dir, 'member', 'snap', 'db');
  // Only an existing regular file is locked: flock(1) would create a missing one.
  const isFile = await lstat(database).then(
    (stat) => stat.isFile(),
    () => false,
  );
  const locked = isFile ? await lockHeld(database) : false;
  const user = await processUsing(dir);
  if (user) return locked ? { ...user, evidence: `${user.evidence}, and member/snap/db is locked` } : user;
  if (locked) return { dataDir, evidence: 'member/snap/db is locked by the member (flock)' };
  return undefined;
}

/**
 * Refuses a data dir a running member uses.
 *
 * @throws {EtcdMemberRunningError} (`BK_CONFLICT`) naming the process and what to stop.
 */
export async function assertNoRunningMember(dataDir: string): Promise<void> {
  const member = await findRunningMember(dataDir);
  if (member) throw new EtcdMemberRunningError({ ...member, dataDir });
}
