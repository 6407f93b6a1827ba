import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** What one measured command took. */
export interface TreeMeasurement {
  seconds: number;
  /** Peak resident set of the command's process tree, MiB: the sum of each process's VmHWM. */
  peakRssMiB: number;
  /** User + system CPU seconds of every process of the tree (exact: bash's `times`). */
  cpuSeconds: number;
  /** User + system CPU seconds the server processes used meanwhile (not part of `cpuSeconds`). */
  serverCpuSeconds: number;
}

/*
 * The sampler runs every 50 ms beside CPU-bound commands: it reads /proc synchronously (a few
 * dozen small reads, well under a millisecond), where the same reads through fs/promises cost
 * ~7 % of a core in thread-pool round trips, taken from the command being measured.
 */

function readProc(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return ''; // the process or thread has exited
  }
}

function children(pid: number): number[] {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const task of tasks)
    found.push(...readProc(`/proc/${pid}/task/${task}/children`).split(/\s+/).filter(Boolean).map(Number));
  return found;
}

function descendants(pid: number): number[] {
  return [pid, ...children(pid).flatMap(descendants)];
}

function highWaterMiB(pid: number): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(readProc(`/proc/${pid}/status`))?.[1] ?? 0) / 1024;
}

/** utime + stime of one process (all its threads), seconds; not its children. */
function ownCpu(pid: number): number {
  const stat = readProc(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) / 100;
}

/** CPU seconds used so far by these long-lived server processes and their descendants. */
export function serverCpu(pids: readonly number[]): number {
  const all = new Set(pids.flatMap(descendants));
  let seconds = 0;
  for (const pid of all) seconds += ownCpu(pid);
  return seconds;
}

function parseTimes(text: string): number {
  // `times` prints "0m1.234s 0m0.056s" for the shell, then the same for its waited-for children.
  let total = 0;
  for (const [, minutes, seconds] of text.matchAll(/(\d+)m([\d.]+)s/g))
    total += Number(minutes) * 60 + Number(seconds);
  return total;
}

/**
 * Runs `command` under `bash` (with `pipefail`) and reports wall time, the exact CPU time of the
 * whole tree (bash's `times`: every process the shell waited for, with their own waited-for
 * children and all their threads) and the peak of the summed VmHWM of the tree, sampled every
 * 50 ms. The wrapper shell itself is not part of the peak. Rejects with the tail of stderr when
 * the command fails.
 */
export async function measureTree(
  command: string,
  options: { env?: NodeJS.ProcessEnv; serverPids?: readonly number[] } = {},
): Promise<TreeMeasurement> {
  const script = `set -o pipefail\n${command}\nstatus=$?\ntimes >&3\nexit $status\n`;
  const serverBefore = serverCpu(options.serverPids ?? []);
  const started = process.hrtime.bigint();
  const child = spawn('bash', ['-c', script], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    env: options.env ?? process.env,
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  let times = '';
  child.stdio[3]!.on('data', (chunk: Buffer) => {
    times += chunk.toString('utf8');
  });
  const peaks = new Map<number, number>();
  const sample = () => {
    for (const pid of descendants(child.pid!)) {
      if (pid === child.pid) continue;
      peaks.set(pid, Math.max(peaks.get(pid) ?? 0, highWaterMiB(pid)));
    }
  };
  const timer = setInterval(sample, 50);
  const code = await new Promise<number>((resolve) =>
    child.on('close', (status, signal) => resolve(status ?? (signal ? 128 : 1))),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  clearInterval(timer);
  const serverCpuSeconds = serverCpu(options.serverPids ?? []) - serverBefore;
  if (code !== 0) throw new Error(`exit ${code}: ${stderr.trim().split('\n').slice(-6).join(' / ')}`);
  let peakRssMiB = 0;
  for (const rss of peaks.values()) peakRssMiB += rss;
  return { seconds, peakRssMiB, cpuSeconds: parseTimes(times), serverCpuSeconds };
}

/** What one measured command took (see {@link measureTree}). */
export type Measurement = Omit<TreeMeasurement, 'serverCpuSeconds'>;

/** {@link measureTree} without server processes: wall time, CPU seconds and peak RSS of the tree. */
export async function measure(command: string, env: NodeJS.ProcessEnv = process.env): Promise<Measurement> {
  const { seconds, peakRssMiB, cpuSeconds } = await measureTree(command, { env });
  return { seconds, peakRssMiB, cpuSeconds };
}
