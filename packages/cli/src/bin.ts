#!/usr/bin/env node
/**
 * The `bk` command. Before anything else is loaded it replaces itself once (execve: the same
 * process and PID, nothing runs twice) with the V8 heap settings measured on bk's streaming
 * work (see the README's "Memory and the runtime"): a 2 MiB young-generation semi-space, so the
 * buffers of chunks already passed on are freed sooner (lower peak RSS), and a 32 MiB initial
 * old generation, so a stream of short-lived objects does not trigger a full collection every
 * few MiB (less CPU) nor, as with 64 MiB, let garbage pile up to it (more RSS).
 * `BK_NODE_TUNING=0` turns this off; a flag already given to node (on its command line or in
 * NODE_OPTIONS) is kept as given.
 */
const HEAP_FLAGS = ['--max-semi-space-size=2', '--initial-old-space-size=32'];

function tune(): void {
  const execve = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never })
    .execve;
  if (process.env.BK_NODE_TUNING === '0' || process.env.BK_NODE_TUNED === '1' || !execve) return;
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  const flags = HEAP_FLAGS.filter((flag) => !given.some((option) => option.startsWith(flag.split('=')[0]!)));
  if (flags.length === 0 || !process.argv[1]) return;
  try {
    execve.call(
      process,
      process.execPath,
      [process.execPath, ...process.execArgv, ...flags, process.argv[1], ...process.argv.slice(2)],
      { ...process.env, BK_NODE_TUNED: '1' },
    );
  } catch {
    // A system that refuses execve (a sandbox) runs bk with node's defaults.
  }
}

tune();
await import(new URL('./run.js', import.meta.url).href);
