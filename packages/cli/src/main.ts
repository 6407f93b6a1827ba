import { BK_VERSION, ConfigError } from '@bk/core';
import { Command, CommanderError } from 'commander';
import type { CliIo } from './cli-io.ts';
import { CommandContext, type GlobalOptions } from './command-context.ts';
import { defineBackupCommand } from './commands/backup-command.ts';
import { defineExtractCommand } from './commands/extract-command.ts';
import { defineInspectCommand } from './commands/inspect-command.ts';
import { defineKeygenCommand } from './commands/keygen-command.ts';
import { defineListCommand } from './commands/list-command.ts';
import { definePruneCommand } from './commands/prune-command.ts';
import { defineRestoreCommand } from './commands/restore-command.ts';
import { defineVerifyCommand } from './commands/verify-command.ts';
import { EXIT_CODES, type ExitCode } from './exit-codes.ts';
import { reportError } from './report-error.ts';

function wantsJson(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

function createProgram(io: CliIo, secrets: Set<string>): Command {
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
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      // Usage errors are reported by main, like every other error.
      outputError: () => {},
    })
    .showSuggestionAfterError();
  const contextOf = (command: Command) =>
    new CommandContext(io, command.optsWithGlobals<GlobalOptions>(), secrets);
  defineBackupCommand(program, contextOf);
  defineRestoreCommand(program, contextOf);
  defineListCommand(program, contextOf);
  defineInspectCommand(program, contextOf);
  defineVerifyCommand(program, contextOf);
  defineExtractCommand(program, contextOf);
  definePruneCommand(program, contextOf);
  defineKeygenCommand(program, contextOf);
  return program;
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
  const json = wantsJson(argv);
  const secrets = new Set<string>();
  try {
    await createProgram(resolved, secrets).parseAsync(argv, { from: 'user' });
    return EXIT_CODES.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version')
        return EXIT_CODES.ok;
      return reportError(usageError(error), resolved, json);
    }
    const code = reportError(error, resolved, json, secrets);
    // Whatever failed after an interrupt failed because of it.
    return resolved.signal?.aborted ? EXIT_CODES.interrupted : code;
  }
}
