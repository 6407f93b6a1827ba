import { resolve as resolvePath } from 'node:path';
import { BK_VERSION, ConfigError } from '@bk/core';
import { Command, CommanderError } from 'commander';
import type { CliIo } from './cli-io.ts';
import {
  CommandContext,
  type CommandRun,
  DEFAULT_PROGRESS_INTERVAL_MS,
  type GlobalOptions,
} from './command-context.ts';
import { defineBackupCommand } from './commands/backup-command.ts';
import { defineExtractCommand } from './commands/extract-command.ts';
import { defineInspectCommand } from './commands/inspect-command.ts';
import { defineKeygenCommand } from './commands/keygen-command.ts';
import { defineListCommand } from './commands/list-command.ts';
import { definePruneCommand } from './commands/prune-command.ts';
import { defineRekeyCommand } from './commands/rekey-command.ts';
import { defineRestoreCommand } from './commands/restore-command.ts';
import { defineVerifyCommand } from './commands/verify-command.ts';
import { EXIT_CODES, type ExitCode } from './exit-codes.ts';
import { JsonEventStream } from './json-event-stream.ts';
import { parseDuration } from './option-parsers.ts';
import { redactUrl } from './redact-url.ts';
import { describeError, reportError, scrubber } from './report-error.ts';
import { pushMetrics, type RunOutcome, RunRecorder, writeMetricsFile } from './run-metrics.ts';

function wantsFlag(argv: string[], flag: string): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes(flag);
}

function createProgram(io: CliIo, secrets: Set<string>, run: CommandRun): Command {
  const program = new Command('bk')
    .description(
      'Back up data stores into object storage, and restore, list, inspect, verify and prune backups.',
    )
    .version(BK_VERSION, '-V, --version')
    .option('--config <file>', 'config file (default: ./bk.config.json when it exists)')
    .option(
      '--target <url>',
      "where backups are stored, e.g. file:///var/backups/bk (overrides the config's)",
    )
    .option('--prefix <prefix>', 'key prefix inside the target')
    .option('--json', 'machine output: exactly one JSON document on stdout')
    .option('--quiet', 'no progress or summaries on stderr')
    .option('--no-progress', 'no progress bar; one line per component instead')
    .option(
      '--progress-interval <duration>',
      'without a terminal, a progress line (or --json-events "progress" event) this often, e.g. 30s (default 5s; 0s: none)',
      parseDuration,
    )
    .option('--json-events', 'machine output: one JSON object per line (NDJSON) on stdout for each step')
    .option(
      '--metrics-file <path>',
      'after the run, write Prometheus metrics to this node exporter textfile (atomically)',
    )
    .option('--pushgateway <url>', 'after the run, push Prometheus metrics to this Pushgateway')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      // Usage errors are reported by main, like every other error.
      outputError: () => {},
    })
    .showSuggestionAfterError()
    .hook('preAction', (_program, action) => {
      const options = action.optsWithGlobals<GlobalOptions>();
      run.command = action.name();
      run.options = options;
      if (options.metricsFile !== undefined || options.pushgateway !== undefined)
        run.recorder = new RunRecorder();
      if (options.jsonEvents && options.json) {
        throw new ConfigError('Pass either --json (one document) or --json-events (a stream), not both.');
      }
      if (options.jsonEvents) {
        run.events = new JsonEventStream(io.stdout, {
          intervalMs: options.progressInterval ?? DEFAULT_PROGRESS_INTERVAL_MS,
          scrub: (line) => scrubber(secrets)(line),
        });
      }
    });
  const contextOf = (command: Command) =>
    new CommandContext(io, command.optsWithGlobals<GlobalOptions>(), secrets, run);
  defineBackupCommand(program, contextOf);
  defineRestoreCommand(program, contextOf);
  defineListCommand(program, contextOf);
  defineInspectCommand(program, contextOf);
  defineVerifyCommand(program, contextOf);
  defineExtractCommand(program, contextOf);
  definePruneCommand(program, contextOf);
  defineKeygenCommand(program, contextOf);
  defineRekeyCommand(program, contextOf);
  return program;
}

/**
 * Writes the run's metrics where `--metrics-file` and `--pushgateway` say. A failure to deliver
 * them is reported on stderr and does not change the exit code: the run itself is done, and a
 * missing update shows in Prometheus as a stale `bk_last_run_timestamp_seconds`.
 */
async function deliverMetrics(
  run: CommandRun,
  io: CliIo,
  startedAt: number,
  errorCode?: string,
): Promise<void> {
  const { recorder, options, command } = run;
  if (!recorder || !options || !command) return;
  const outcome: RunOutcome = {
    command,
    target: run.target ?? '',
    endedAt: Date.now(),
    durationSeconds: (performance.now() - startedAt) / 1000,
    ...(errorCode === undefined ? {} : { errorCode }),
    ...(recorder.archiveSize === undefined ? {} : { archiveSize: recorder.archiveSize }),
    ...(recorder.entries === undefined ? {} : { entries: recorder.entries }),
    ...(recorder.bytes === undefined ? {} : { bytes: recorder.bytes }),
    components: recorder.components,
  };
  if (options.metricsFile !== undefined) {
    const file = resolvePath(io.cwd, options.metricsFile);
    try {
      await writeMetricsFile(file, outcome);
    } catch (error) {
      io.stderr.write(`bk: warning: could not write the metrics file ${file}: ${(error as Error).message}\n`);
    }
  }
  if (options.pushgateway !== undefined) {
    try {
      await pushMetrics(options.pushgateway, outcome);
    } catch (error) {
      const reason =
        error instanceof Error
          ? error.cause instanceof Error
            ? error.cause.message
            : error.message
          : String(error);
      io.stderr.write(
        `bk: warning: could not push metrics to ${redactUrl(options.pushgateway)}: ${reason}\n`,
      );
    }
  }
}

function usageError(error: CommanderError): ConfigError {
  const message = error.message.replace(/^error:\s*/, '').replace(/\s*\n\s*/g, ' ');
  if (error.code === 'commander.help') {
    return new ConfigError('No command given. Commands: backup, restore, ls, inspect, verify, prune.');
  }
  return new ConfigError(`${message.charAt(0).toUpperCase()}${message.slice(1)} (see bk --help)`);
}

/**
 * Runs the `bk` command line and resolves to its exit code; it never throws and never calls
 * `process.exit`, so services can embed it. See {@link EXIT_CODES}.
 *
 * @param argv the arguments after the program name, e.g. `['backup', '--only', 'etcd']`.
 * @param io streams, environment, working directory, an abort signal and the registries;
 *   each defaults to the process's own.
 * @example
 * process.exitCode = await main(process.argv.slice(2));
 */
export async function main(argv: string[], io: Partial<CliIo> = {}): Promise<ExitCode> {
  const resolved: CliIo = {
    ...io,
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    env: io.env ?? process.env,
    cwd: io.cwd ?? process.cwd(),
  };
  const json = wantsFlag(argv, '--json');
  const secrets = new Set<string>();
  const run: CommandRun = {};
  const startedAt = performance.now();
  try {
    await createProgram(resolved, secrets, run).parseAsync(argv, { from: 'user' });
    await deliverMetrics(run, resolved, startedAt);
    return EXIT_CODES.ok;
  } catch (error) {
    // A usage error comes before any command ran, but a stream asked for still ends in its error.
    const events =
      run.events ??
      (wantsFlag(argv, '--json-events') && !json ? new JsonEventStream(resolved.stdout) : undefined);
    events?.finish();
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version')
        return EXIT_CODES.ok;
      const usage = usageError(error);
      events?.write('error', { error: describeError(usage) });
      return reportError(usage, resolved, json);
    }
    const code = reportError(error, resolved, json, secrets);
    const described = describeError(error, secrets);
    events?.write('error', { error: described });
    await deliverMetrics(run, resolved, startedAt, described.code);
    // Whatever failed after an interrupt failed because of it.
    return resolved.signal?.aborted ? EXIT_CODES.interrupted : code;
  }
}
