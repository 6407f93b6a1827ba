import { spawn } from 'node:child_process';

/** What {@link runCommand} gives back: the exit code (1 when killed) and stdout + stderr. */
export interface CommandResult {
  code: number;
  output: string;
}

/**
 * Runs a command to its end, collecting stdout and stderr together (a component's tool checks:
 * `haproxy -c`, `etcdctl snapshot restore`). Rejects only when the command cannot be started
 * or `signal` aborts it; a non-zero exit is the caller's to judge.
 *
 * @example
 * const { code, output } = await runCommand('haproxy', ['-c', '-f', file], { signal });
 */
export function runCommand(
  command: string,
  args: string[],
  options: {
    cwd?: string | undefined;
    env?: NodeJS.ProcessEnv | undefined;
    signal?: AbortSignal | undefined;
  } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      ...(options.env === undefined ? {} : { env: options.env }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const append = (data: Buffer) => {
      output += data.toString();
    };
    child.stdout.on('data', append);
    child.stderr.on('data', append);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, output }));
  });
}
