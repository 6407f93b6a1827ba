const BRAND = Symbol.for('@bk/core.BkError');

/** Stable error codes: scripts and services branch on these, never on messages. */
export type BkErrorCode =
  | 'BK_ABORTED'
  | 'BK_CONFIG'
  | 'BK_NOT_FOUND'
  | 'BK_ALREADY_EXISTS'
  | 'BK_INTEGRITY'
  | 'BK_MANIFEST'
  | 'BK_MANIFEST_VERSION'
  | 'BK_UNSAFE_PATH'
  | 'BK_CONFLICT'
  | 'BK_STORAGE'
  | 'BK_COMPONENT'
  | 'BK_UNSUPPORTED'
  | 'BK_DECRYPTION'
  | 'BK_UNENCRYPTED_SECRETS'
  | 'BK_VERSION_MISMATCH';

export interface BkErrorOptions {
  cause?: unknown;
  /** Whether repeating the same operation may succeed (network resets, throttling, 5xx). */
  retryable?: boolean;
}

/**
 * The root of every error bk throws. `code` is stable across releases, `retryable` says whether
 * trying again can help, and `cause` keeps the underlying error. Use {@link BkError.isInstance}
 * rather than `instanceof`: it also recognises errors thrown by another copy of `@bk/core`.
 *
 * @example
 * try { await restore(...) } catch (error) {
 *   if (BkError.isInstance(error) && error.code === 'BK_INTEGRITY') alertOperator(error.message);
 * }
 */
export class BkError extends Error {
  readonly [BRAND] = true;
  readonly code: BkErrorCode;
  readonly retryable: boolean;

  constructor(code: BkErrorCode, message: string, options: BkErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BkError';
    this.code = code;
    this.retryable = options.retryable ?? false;
  }

  /** True for any bk error, whichever copy of `@bk/core` created it. */
  static isInstance(value: unknown): value is BkError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}

/** The operation was cancelled through its `AbortSignal`. */
export class AbortedError extends BkError {
  constructor(message = 'The operation was aborted.', options: BkErrorOptions = {}) {
    super('BK_ABORTED', message, options);
    this.name = 'AbortedError';
  }
}

/** A configuration value, option or target URL is invalid. Fix the input and run again. */
export class ConfigError extends BkError {
  constructor(message: string, options: BkErrorOptions = {}) {
    super('BK_CONFIG', message, options);
    this.name = 'ConfigError';
  }
}

/** A backup, object or component that was asked for does not exist. */
export class NotFoundError extends BkError {
  constructor(message: string, options: BkErrorOptions = {}) {
    super('BK_NOT_FOUND', message, options);
    this.name = 'NotFoundError';
  }
}

/** A create-if-absent write found the key taken. The runners answer it with the next `_N` name. */
export class AlreadyExistsError extends BkError {
  readonly key: string;
  constructor(key: string, options: BkErrorOptions = {}) {
    super('BK_ALREADY_EXISTS', `An object named "${key}" already exists.`, options);
    this.name = 'AlreadyExistsError';
    this.key = key;
  }
}

/**
 * Bytes do not match what was recorded: a size or sha256 mismatch, truncation or corruption.
 * `entry` names the archive entry that failed, when one can be named.
 */
export class IntegrityError extends BkError {
  readonly entry: string | undefined;
  constructor(message: string, options: BkErrorOptions & { entry?: string } = {}) {
    super('BK_INTEGRITY', message, options);
    this.name = 'IntegrityError';
    this.entry = options.entry;
  }
}

/** A manifest is missing, malformed, or does not describe the archive it sits beside. */
export class ManifestError extends BkError {
  constructor(message: string, options: BkErrorOptions = {}) {
    super('BK_MANIFEST', message, options);
    this.name = 'ManifestError';
  }
}

/** The manifest was written in a format version this bk does not read. Upgrade bk. */
export class ManifestVersionError extends BkError {
  readonly formatVersion: unknown;
  constructor(formatVersion: unknown, supported: number) {
    super(
      'BK_MANIFEST_VERSION',
      `This backup uses manifest format version ${String(formatVersion)}, but this bk reads only version ${supported}. Upgrade bk to restore or verify it.`,
    );
    this.name = 'ManifestVersionError';
    this.formatVersion = formatVersion;
  }
}

/** A path would land outside the restore target (absolute, `..`, or through an escaping link). */
export class UnsafePathError extends BkError {
  readonly path: string;
  constructor(path: string, reason: string) {
    super('BK_UNSAFE_PATH', `Refusing "${path}": ${reason}. Nothing was written for it.`);
    this.name = 'UnsafePathError';
    this.path = path;
  }
}

/** Restoring would overwrite existing data and the conflict policy says `fail`. */
export class ConflictError extends BkError {
  readonly path: string;
  constructor(path: string, message?: string) {
    super(
      'BK_CONFLICT',
      message ??
        `"${path}" already exists in the restore target. Choose a conflict policy (skip or overwrite) or restore into an empty target.`,
    );
    this.name = 'ConflictError';
    this.path = path;
  }
}

/** A storage backend failed. `retryable` is set for throttling, 5xx and connection resets. */
export class StorageError extends BkError {
  constructor(message: string, options: BkErrorOptions = {}) {
    super('BK_STORAGE', message, options);
    this.name = 'StorageError';
  }
}

/** A component (a data store's source or restorer) failed. */
export class ComponentError extends BkError {
  readonly component: string;
  constructor(component: string, message: string, options: BkErrorOptions = {}) {
    super('BK_COMPONENT', `${component}: ${message}`, options);
    this.name = 'ComponentError';
    this.component = component;
  }
}

/** The operation is not offered by this storage, component or Node version. */
export class UnsupportedError extends BkError {
  constructor(message: string, options: BkErrorOptions = {}) {
    super('BK_UNSUPPORTED', message, options);
    this.name = 'UnsupportedError';
  }
}

/**
 * An encrypted backup cannot be opened: no identity was given, or none of those given is one of
 * the recipients it was encrypted to. `expected` lists those recipients (public keys) when the
 * manifest records them. Thrown before anything is read past the header or written.
 */
export class DecryptionError extends BkError {
  readonly expected: readonly string[];
  readonly tried: readonly string[];
  constructor(
    what: string,
    expected: readonly string[],
    tried: readonly string[],
    options: BkErrorOptions = {},
  ) {
    const to = expected.length > 0 ? ` It is encrypted to ${expected.join(', ')}.` : '';
    const given =
      tried.length === 0
        ? ' No identity was given: pass the secret key of one of its recipients (--identity FILE or BK_AGE_IDENTITY).'
        : ` None of the identities given (${tried.join(', ')}) is one of them: pass the secret key of a recipient it was encrypted to.`;
    super('BK_DECRYPTION', `Cannot decrypt ${what}.${to}${given}`, options);
    this.name = 'DecryptionError';
    this.expected = expected;
    this.tried = tried;
  }
}

/**
 * Encryption is required and a backup would store secrets unencrypted. Thrown before anything
 * is written when a component declares its secrets up front, and otherwise as soon as an entry
 * holding one is read, with the run's objects removed: no backup is published either way.
 */
export class UnencryptedSecretsError extends BkError {
  /** The components holding secrets, with what they hold. */
  readonly components: readonly { name: string; secrets: readonly string[] }[];
  constructor(components: readonly { name: string; secrets: readonly string[] }[]) {
    const listed = components
      .map((component) => `"${component.name}" (${component.secrets.join('; ')})`)
      .join(', ');
    super(
      'BK_UNENCRYPTED_SECRETS',
      `Refusing to store secrets unencrypted: ${listed}, and encryption is required (--require-encryption or encryption.required). Encrypt the backup (--recipient age1… or encryption.recipients in the config) or leave these components out; nothing was stored.`,
    );
    this.name = 'UnencryptedSecretsError';
    this.components = components;
  }
}

/**
 * A restore target runs a version that cannot take the backup (another major, older than the
 * backup, a tool that cannot read its format). Thrown before anything is written. `forceable`
 * says whether restoring with `force` may still work.
 */
export class VersionMismatchError extends BkError {
  readonly component: string;
  readonly backupVersion: string | undefined;
  readonly targetVersion: string | undefined;
  readonly forceable: boolean;
  constructor(
    details: {
      component: string;
      backup: string;
      backupVersion: string | undefined;
      targetVersion: string | undefined;
      reason: string;
      forceable: boolean;
    },
    options: BkErrorOptions = {},
  ) {
    const { component, backup, backupVersion, targetVersion, reason, forceable } = details;
    super(
      'BK_VERSION_MISMATCH',
      `${component}: refusing to restore ${backup} (backed up from version ${backupVersion ?? 'unknown'}) into the target's version ${targetVersion ?? 'unknown'}: ${reason}. Nothing was written.${forceable ? ' Restore with --force to try anyway.' : ''}`,
      options,
    );
    this.name = 'VersionMismatchError';
    this.component = component;
    this.backupVersion = backupVersion;
    this.targetVersion = targetVersion;
    this.forceable = forceable;
  }
}

/** Throws the signal's reason as an {@link AbortedError} when the signal is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw toAbortedError(signal);
}

/** The abort reason of `signal`, as a bk error. */
export function toAbortedError(signal: AbortSignal): BkError {
  const reason: unknown = signal.reason;
  if (BkError.isInstance(reason)) return reason;
  return new AbortedError(reason instanceof Error ? reason.message : undefined, { cause: reason });
}
