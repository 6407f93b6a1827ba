import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';

/** What one measured command took. */
export interface Measurement {
  seconds: number;
  /** Peak resident set of the whole process tree, MiB (sum of each process's VmHWM). */
  peakRssMiB: number;
  /** User + system CPU seconds of the tree. */
  cpuSeconds: number;
}

async function descendants(pid: number): Promise<number[]> {
  const children = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  const direct = children.split(/\s+/).filter(Boolean).map(Number);
  return [pid, ...(await Promise.all(direct.map(descendants))).flat()];
}

async function highWater(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

async function cpu(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime, stime, cutime, cstime (fields 14–17 of proc(5)), in clock ticks of 1/100 s.
  return [11, 12, 13, 14].reduce((sum, index) => sum + Number(fields[index] ?? 0), 0) / 100;
}

/**
 * Runs `bash -c command` and samples every process of its tree every 50 ms: the peak of the
 * summed VmHWM and the CPU seconds. Rejects when the command fails.
 */
export async function measure(command: string, env: NodeJS.ProcessEnv = process.env): Promise<Measurement> {
  const started = process.hrtime.bigint();
  const child = spawn('bash', ['-c', command], { stdio: ['ignore', 'ignore', 'inherit'], env });
  const perProcess = new Map<number, { rss: number; cpu: number }>();
  const sample = async () => {
    for (const pid of await descendants(child.pid!)) {
      const [rss, seconds] = await Promise.all([highWater(pid), cpu(pid)]);
      const previous = perProcess.get(pid) ?? { rss: 0, cpu: 0 };
      perProcess.set(pid, { rss: Math.max(previous.rss, rss), cpu: Math.max(previous.cpu, seconds) });
    }
  };
  const timer = setInterval(() => void sample(), 50);
  const code = await new Promise<number>((resolve) => child.on('exit', (status) => resolve(status ?? 1)));
  clearInterval(timer);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (code !== 0) throw new Error(`"${command}" exited with ${code}`);
  let peakRssMiB = 0;
  let cpuSeconds = 0;
  for (const { rss, cpu: used } of perProcess.values()) {
    peakRssMiB += rss;
    cpuSeconds += used;
  }
  return { seconds, peakRssMiB, cpuSeconds };
}
