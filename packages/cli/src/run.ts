/** What `bk` runs once bin.ts has settled the runtime: signal handling, then {@link main}. */
import { AbortedError } from '@bk/core';
import { EXIT_CODES } from './exit-codes.ts';
import { main } from './main.ts';

const controller = new AbortController();
let interrupts = 0;

function interrupt(signal: NodeJS.Signals): void {
  interrupts += 1;
  // A second interrupt means the user does not want to wait for the clean-up.
  if (interrupts > 1) process.exit(EXIT_CODES.interrupted);
  controller.abort(new AbortedError(`Interrupted by ${signal}; the run was cancelled.`));
}

process.on('SIGINT', interrupt);
process.on('SIGTERM', interrupt);
// `bk ls | head` closes stdout early; that is not an error worth a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
});

const code = await main(process.argv.slice(2), { signal: controller.signal });
process.exitCode = code;
process.off('SIGINT', interrupt);
process.off('SIGTERM', interrupt);
