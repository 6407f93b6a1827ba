import { describe, expect, it } from 'vitest';
import { runCommand } from '../src/index.ts';

describe('runCommand', () => {
  it('returns the exit code and stdout and stderr together', async () => {
    const result = await runCommand('sh', ['-c', 'echo out; echo err >&2; echo "$BK_X"; exit 3'], {
      env: { ...process.env, BK_X: 'from env' },
    });
    expect(result.code).toBe(3);
    expect(result.output).toContain('out\n');
    expect(result.output).toContain('err\n');
    expect(result.output).toContain('from env\n');
  });

  it('rejects when the command cannot start or is aborted', async () => {
    await expect(runCommand('bk-no-such-command', [])).rejects.toMatchObject({ code: 'ENOENT' });
    const controller = new AbortController();
    const running = runCommand('sleep', ['10'], { signal: controller.signal });
    controller.abort();
    await expect(running).rejects.toMatchObject({ name: 'AbortError' });
  });
});
