import { BkError, type BkErrorCode } from '@bk/core';

/**
 * The exit codes of `bk`. Scripts branch on these; they never change between releases.
 *
 * @example
 * import { EXIT_CODES } from '@bk/cli';
 * if (child.exitCode === EXIT_CODES.integrity) page('backup damaged');
 */
export const EXIT_CODES = {
  /** Everything worked. */
  ok: 0,
  /** An unexpected error: a bug, or a failure bk has no code for (component, unsupported). */
  unexpected: 1,
  /** Bad flags or arguments, an unknown command, or an invalid config file (`BK_CONFIG`). */
  usage: 2,
  /** The backup, object or component asked for does not exist (`BK_NOT_FOUND`). */
  notFound: 3,
  /** The backup is damaged or its manifest unreadable (`BK_INTEGRITY`, `BK_MANIFEST`, `BK_MANIFEST_VERSION`). */
  integrity: 4,
  /** Restore refused: data exists in the target or a path would escape it (`BK_CONFLICT`, `BK_UNSAFE_PATH`). */
  conflict: 5,
  /** The storage backend failed (`BK_STORAGE`). */
  storage: 6,
  /** An encrypted backup and no identity (or none of its recipients') to open it (`BK_DECRYPTION`). */
  decryption: 7,
  /** Encryption is required and the backup would store secrets unencrypted; nothing was stored (`BK_UNENCRYPTED_SECRETS`). */
  unencryptedSecrets: 8,
  /** Restore refused before writing: the target's version cannot take the backup (`BK_VERSION_MISMATCH`); see `--force`. */
  versionMismatch: 9,
  /** Interrupted by SIGINT or SIGTERM; the run was aborted and cleaned up (`BK_ABORTED`). */
  interrupted: 130,
} as const;

/** One of the values of {@link EXIT_CODES}. */
export type ExitCode = (typeof EXIT_CODES)[keyof typeof EXIT_CODES];

const BY_ERROR_CODE: Partial<Record<BkErrorCode, ExitCode>> = {
  BK_CONFIG: EXIT_CODES.usage,
  BK_NOT_FOUND: EXIT_CODES.notFound,
  BK_INTEGRITY: EXIT_CODES.integrity,
  BK_MANIFEST: EXIT_CODES.integrity,
  BK_MANIFEST_VERSION: EXIT_CODES.integrity,
  BK_CONFLICT: EXIT_CODES.conflict,
  BK_UNSAFE_PATH: EXIT_CODES.conflict,
  BK_STORAGE: EXIT_CODES.storage,
  BK_DECRYPTION: EXIT_CODES.decryption,
  BK_UNENCRYPTED_SECRETS: EXIT_CODES.unencryptedSecrets,
  BK_VERSION_MISMATCH: EXIT_CODES.versionMismatch,
  BK_ABORTED: EXIT_CODES.interrupted,
};

/** The exit code for an error thrown by a command: by its bk error code, else `unexpected`. */
export function exitCodeFor(error: unknown): ExitCode {
  if (!BkError.isInstance(error)) return EXIT_CODES.unexpected;
  return BY_ERROR_CODE[error.code] ?? EXIT_CODES.unexpected;
}
