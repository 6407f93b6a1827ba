import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
  scrypt,
  timingSafeEqual,
} from 'node:crypto';
import { AgeChunkCipher, ChunkAuthenticationError } from './age-chunk-worker.ts';
import type { ByteStream } from './contracts.ts';
import { ConfigError, DecryptionError, IntegrityError } from './errors.ts';

/**
 * The age file format (https://age-encryption.org/v1) on `node:crypto` alone: X25519
 * recipients, HKDF-SHA256, ChaCha20-Poly1305 in 64 KiB STREAM chunks. What it writes opens with
 * the stock `age -d -i key.txt`, and what `age -r age1…` writes opens here.
 *
 * Memory: a batch of about 1 MiB and the input chunk being cut, or with `thread: true` up to three
 * batches in and out on their way through the worker thread.
 */

const INTRO = 'age-encryption.org/v1\n';
const X25519_LABEL = 'age-encryption.org/v1/X25519';
const SCRYPT_LABEL = 'age-encryption.org/v1/scrypt';
/**
 * The scrypt work factor (log2 N) bk writes, as `age -p` does: N = 2^18, r = 8, which takes
 * 256 MiB and about a second of one core per derivation, once per encrypted object.
 */
export const AGE_SCRYPT_WORK_FACTOR = 18;
/** The highest work factor accepted when decrypting, as age's (2^22: 4 GiB of scrypt memory). */
const MAX_SCRYPT_WORK_FACTOR = 22;
const SCRYPT_SALT_SIZE = 16;
/** What a passphrase is called in errors that list the identities tried or expected. */
export const AGE_PASSPHRASE_RECIPIENT = 'a passphrase (scrypt)';

/** How a passphrase travels among the secret keys (`identities`) of bk's read options. */
const PASSPHRASE_KEY_PREFIX = 'bk-age-passphrase:';

/**
 * A passphrase as one of the secret keys bk's read options take (`identities`), beside
 * `AGE-SECRET-KEY-1…` keys: opens backups encrypted with that passphrase.
 *
 * @example
 * await restore({ storage, target, name: 'latest', identities: [agePassphraseKey(passphrase)] });
 */
export function agePassphraseKey(passphrase: string): string {
  if (passphrase === '') throw new ConfigError('The passphrase is empty.');
  return PASSPHRASE_KEY_PREFIX + passphrase;
}

/** Splits secret keys into X25519 identities and the passphrase (see {@link agePassphraseKey}). */
export function ageDecryptKeys(keys: readonly string[] | undefined): {
  identities: AgeIdentity[];
  passphrase?: string;
} {
  const identities: AgeIdentity[] = [];
  let passphrase: string | undefined;
  for (const key of keys ?? []) {
    if (key.startsWith(PASSPHRASE_KEY_PREFIX)) passphrase = key.slice(PASSPHRASE_KEY_PREFIX.length);
    else identities.push(parseAgeIdentity(key));
  }
  return passphrase === undefined ? { identities } : { identities, passphrase };
}
/** Plaintext bytes per STREAM chunk. */
export const AGE_CHUNK_SIZE = 64 * 1024;
const TAG_SIZE = 16;
/** Ciphertext bytes per full STREAM chunk. */
export const AGE_SEALED_CHUNK_SIZE = AGE_CHUNK_SIZE + TAG_SIZE;
const FILE_KEY_SIZE = 16;
const PAYLOAD_NONCE_SIZE = 16;
/** The longest header read before giving up: thousands of recipients fit. */
const MAX_HEADER = 1024 * 1024;
const PUBLIC_HRP = 'age';
const SECRET_HRP = 'age-secret-key-';
// DER prefixes of a raw 32-byte X25519 key as PKCS#8 and SPKI.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

// --- bech32 (BIP 173), which age uses for its keys, without the 90-character limit ---

const BECH32_CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const BECH32_GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function polymod(values: number[]): number {
  let check = 1;
  for (const value of values) {
    const top = check >>> 25;
    check = ((check & 0x1ffffff) << 5) ^ value;
    for (let bit = 0; bit < 5; bit += 1) if ((top >>> bit) & 1) check ^= BECH32_GENERATOR[bit]!;
  }
  return check >>> 0;
}

function expandHrp(hrp: string): number[] {
  const codes = [...hrp].map((char) => char.charCodeAt(0));
  return [...codes.map((code) => code >>> 5), 0, ...codes.map((code) => code & 31)];
}

function convertBits(
  data: Uint8Array | number[],
  from: number,
  to: number,
  pad: boolean,
): number[] | undefined {
  let accumulator = 0;
  let bits = 0;
  const result: number[] = [];
  const mask = (1 << to) - 1;
  for (const value of data) {
    accumulator = (accumulator << from) | value;
    bits += from;
    while (bits >= to) {
      bits -= to;
      result.push((accumulator >>> bits) & mask);
    }
  }
  if (pad) {
    if (bits > 0) result.push((accumulator << (to - bits)) & mask);
  } else if (bits >= from || ((accumulator << (to - bits)) & mask) !== 0) {
    return undefined;
  }
  return result;
}

function bech32Encode(hrp: string, data: Uint8Array): string {
  const words = convertBits(data, 8, 5, true)!;
  const check = polymod([...expandHrp(hrp), ...words, 0, 0, 0, 0, 0, 0]) ^ 1;
  const checksum = Array.from({ length: 6 }, (_, index) => (check >>> (5 * (5 - index))) & 31);
  return `${hrp}1${[...words, ...checksum].map((word) => BECH32_CHARSET[word]).join('')}`;
}

function bech32Decode(text: string): { hrp: string; data: Uint8Array } | undefined {
  if (text !== text.toLowerCase() && text !== text.toUpperCase()) return undefined;
  const lower = text.toLowerCase();
  const separator = lower.lastIndexOf('1');
  if (separator < 1 || separator + 7 > lower.length) return undefined;
  const hrp = lower.slice(0, separator);
  const words: number[] = [];
  for (const char of lower.slice(separator + 1)) {
    const word = BECH32_CHARSET.indexOf(char);
    if (word < 0) return undefined;
    words.push(word);
  }
  if (polymod([...expandHrp(hrp), ...words]) !== 1) return undefined;
  const bytes = convertBits(words.slice(0, -6), 5, 8, false);
  return bytes ? { hrp, data: Uint8Array.from(bytes) } : undefined;
}

// --- keys ---

/** An X25519 identity: the secret key that opens what was encrypted to its recipient. */
export interface AgeIdentity {
  /** `AGE-SECRET-KEY-1…` */
  secretKey: string;
  /** `age1…`, the public key to encrypt to. */
  recipient: string;
}

function privateKeyObject(raw: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' });
}

function publicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

function rawPublicKey(key: KeyObject): Buffer {
  return (key.type === 'public' ? key : createPublicKey(key))
    .export({ format: 'der', type: 'spki' })
    .subarray(SPKI_PREFIX.length);
}

function rawPrivateKey(key: KeyObject): Buffer {
  return key.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.length);
}

/**
 * A new X25519 identity, as `age-keygen` makes.
 *
 * @example
 * const { secretKey, recipient } = generateAgeIdentity();
 */
export function generateAgeIdentity(): AgeIdentity {
  const { privateKey } = generateKeyPairSync('x25519');
  return {
    secretKey: bech32Encode(SECRET_HRP, rawPrivateKey(privateKey)).toUpperCase(),
    recipient: bech32Encode(PUBLIC_HRP, rawPublicKey(privateKey)),
  };
}

/** The raw 32-byte public key of an `age1…` recipient; throws `ConfigError` when it is not one. */
function parseRecipient(recipient: string): Uint8Array {
  const decoded = bech32Decode(recipient.trim());
  if (
    !decoded ||
    decoded.hrp !== PUBLIC_HRP ||
    decoded.data.length !== 32 ||
    recipient.trim() !== recipient.trim().toLowerCase()
  )
    throw new ConfigError(
      `"${recipient}" is not an age X25519 recipient (a public key "age1…" as age-keygen prints it).`,
    );
  return decoded.data;
}

/** Checks recipients and returns them trimmed; throws `ConfigError` naming the first bad one. */
export function checkAgeRecipients(recipients: readonly string[]): string[] {
  const checked = recipients.map((recipient) => recipient.trim());
  for (const recipient of checked) parseRecipient(recipient);
  return checked;
}

/**
 * Parses an identity: one `AGE-SECRET-KEY-1…` key. Throws a `ConfigError` that does not repeat
 * the key (it is a secret).
 */
export function parseAgeIdentity(secretKey: string): AgeIdentity {
  const decoded = bech32Decode(secretKey.trim());
  if (!decoded || decoded.hrp !== SECRET_HRP || decoded.data.length !== 32)
    throw new ConfigError(
      'An identity is not an age X25519 secret key ("AGE-SECRET-KEY-1…" as age-keygen writes it).',
    );
  return {
    secretKey: secretKey.trim(),
    recipient: bech32Encode(PUBLIC_HRP, rawPublicKey(privateKeyObject(decoded.data))),
  };
}

/**
 * The identities in the text of an identity file as `age-keygen` writes it: one
 * `AGE-SECRET-KEY-1…` per line, `#` comments and blank lines ignored.
 */
export function parseAgeIdentities(text: string): AgeIdentity[] {
  const identities = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map(parseAgeIdentity);
  if (identities.length === 0) throw new ConfigError('The identity file holds no "AGE-SECRET-KEY-1…" line.');
  return identities;
}

/** The recipients in the text of a recipients file: one `age1…` per line, `#` comments ignored. */
export function parseAgeRecipients(text: string): string[] {
  return checkAgeRecipients(
    text
      .split(/\r?\n/)
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#')),
  );
}

/** The identity file `age-keygen` writes: a comment with the time and the public key, then the key. */
export function formatAgeIdentityFile(identity: AgeIdentity, created = new Date()): string {
  return `# created: ${created.toISOString().replace(/\.\d{3}Z$/, 'Z')}\n# public key: ${identity.recipient}\n${identity.secretKey}\n`;
}

// --- header ---

const base64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64').replace(/=+$/, '');

function unbase64(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]*$/.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return base64(bytes) === text ? bytes : undefined;
}

function hkdf(ikm: Uint8Array, salt: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));
}

const ZERO_NONCE = Buffer.alloc(12);

function seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array): Buffer {
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_SIZE });
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** Decrypts and authenticates; `undefined` when the tag does not match. */
function open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array): Buffer | undefined {
  if (sealed.length < TAG_SIZE) return undefined;
  const decipher = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_SIZE });
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_SIZE));
  const plaintext = decipher.update(sealed.subarray(0, sealed.length - TAG_SIZE));
  try {
    decipher.final();
  } catch {
    return undefined;
  }
  return plaintext;
}

function wrapBody(body: Uint8Array): string {
  const text = base64(body);
  const lines: string[] = [];
  for (let start = 0; start <= text.length; start += 64) lines.push(text.slice(start, start + 64));
  return lines.join('\n');
}

function headerMac(fileKey: Uint8Array, headerUpToDashes: string): Buffer {
  return createHmac('sha256', hkdf(fileKey, new Uint8Array(0), 'header'))
    .update(headerUpToDashes)
    .digest();
}

/** One X25519 stanza wrapping `fileKey` for `recipient`, with its final newline. */
function x25519Stanza(fileKey: Uint8Array, recipient: string): string {
  const theirs = parseRecipient(recipient);
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const share = rawPublicKey(publicKey);
  const shared = diffieHellman({ privateKey, publicKey: publicKeyObject(theirs) });
  const wrapKey = hkdf(shared, Buffer.concat([share, theirs]), X25519_LABEL);
  return `-> X25519 ${base64(share)}\n${wrapBody(seal(wrapKey, ZERO_NONCE, fileKey))}\n`;
}

/**
 * scrypt runs one at a time (each takes 2^N × 1 KiB: 256 MiB at work factor 18), so that
 * objects opened or sealed side by side never hold two of its buffers at once.
 */
let scryptQueue: Promise<unknown> = Promise.resolve();
/** Keys already derived in this process, by passphrase, salt and work factor (each salt is one object). */
const derivedKeys = new Map<string, Promise<Buffer>>();
const DERIVED_KEYS_KEPT = 64;

function runScrypt(passphrase: string, salt: Uint8Array, workFactor: number): Promise<Buffer> {
  const N = 2 ** workFactor;
  const run = scryptQueue.then(
    () =>
      new Promise<Buffer>((resolve, reject) =>
        scrypt(
          passphrase.normalize('NFC'),
          Buffer.concat([Buffer.from(SCRYPT_LABEL), salt]),
          32,
          { N, r: 8, p: 1, maxmem: 128 * N * 8 + 4 * 1024 * 1024 },
          (error, key) => (error ? reject(error) : resolve(key)),
        ),
      ),
  );
  scryptQueue = run.catch(() => undefined);
  return run;
}

/**
 * The key an scrypt stanza's body is sealed with. Derived once per salt: the same object's
 * header read again (a sidecar read twice, ranged reads of one archive) costs no second run.
 */
function scryptKey(passphrase: string, salt: Uint8Array, workFactor: number): Promise<Buffer> {
  const id = createHash('sha256')
    .update(passphrase.normalize('NFC'))
    .update('\0')
    .update(salt)
    .update(String(workFactor))
    .digest('base64');
  const known = derivedKeys.get(id);
  if (known) return known;
  const derived = runScrypt(passphrase, salt, workFactor);
  derived.catch(() => derivedKeys.delete(id));
  if (derivedKeys.size >= DERIVED_KEYS_KEPT) derivedKeys.delete(derivedKeys.keys().next().value as string);
  derivedKeys.set(id, derived);
  return derived;
}

/** The one scrypt stanza wrapping `fileKey` under `passphrase`, with its final newline. */
async function scryptStanza(fileKey: Uint8Array, passphrase: string, workFactor: number): Promise<string> {
  if (!Number.isInteger(workFactor) || workFactor < 1 || workFactor > MAX_SCRYPT_WORK_FACTOR)
    throw new ConfigError(`The scrypt work factor must be an integer from 1 to ${MAX_SCRYPT_WORK_FACTOR}.`);
  const salt = randomBytes(SCRYPT_SALT_SIZE);
  const key = await scryptKey(passphrase, salt, workFactor);
  return `-> scrypt ${base64(salt)} ${workFactor}\n${wrapBody(seal(key, ZERO_NONCE, fileKey))}\n`;
}

/** Builds the header: the stanzas (one per recipient, or the one scrypt stanza), then the MAC. */
async function buildHeader(fileKey: Uint8Array, options: AgeEncryptOptions): Promise<Buffer> {
  const recipients = options.recipients ?? [];
  if (options.passphrase !== undefined && recipients.length > 0)
    throw new ConfigError(
      'A passphrase cannot be combined with recipients: age allows a passphrase only as the one way to open a file.',
    );
  if (options.passphrase === undefined && recipients.length === 0)
    throw new ConfigError('Encryption needs at least one recipient (age1…) or a passphrase.');
  if (options.passphrase === '') throw new ConfigError('The passphrase is empty.');
  let header = INTRO;
  if (options.passphrase !== undefined)
    header += await scryptStanza(fileKey, options.passphrase, options.workFactor ?? AGE_SCRYPT_WORK_FACTOR);
  for (const recipient of recipients) header += x25519Stanza(fileKey, recipient);
  header += '---';
  return Buffer.from(`${header} ${base64(headerMac(fileKey, header))}\n`);
}

interface Stanza {
  args: string[];
  body: Buffer;
}

function malformed(problem: string): IntegrityError {
  return new IntegrityError(`The encrypted object is not a valid age file: ${problem}.`);
}

/** Parses a complete header (through the MAC line's newline). */
function parseHeader(text: string): { stanzas: Stanza[]; macInput: string; mac: Buffer } {
  const lines = text.split('\n');
  if (lines[0] !== INTRO.trimEnd()) throw malformed('it does not start with "age-encryption.org/v1"');
  const stanzas: Stanza[] = [];
  let index = 1;
  while (lines[index]?.startsWith('-> ')) {
    const args = lines[index]!.slice(3).split(' ');
    index += 1;
    const bodyLines: string[] = [];
    for (;;) {
      const line = lines[index];
      if (line === undefined) throw malformed('a stanza is cut short');
      index += 1;
      bodyLines.push(line);
      if (line.length < 64) break;
      if (line.length > 64) throw malformed('a stanza line is longer than 64 columns');
    }
    const body = unbase64(bodyLines.join(''));
    if (!body) throw malformed('a stanza body is not canonical base64');
    stanzas.push({ args, body });
  }
  const last = lines[index];
  if (!last?.startsWith('--- ')) throw malformed('the header does not end with a MAC line');
  const mac = unbase64(last.slice(4));
  if (mac?.length !== 32) throw malformed('the header MAC is not 32 bytes of base64');
  const macInput = `${lines.slice(0, index).join('\n')}\n---`;
  return { stanzas, macInput, mac };
}

/**
 * Finds the file key in the stanzas with one of the identities or the passphrase; `undefined`
 * when none opens it.
 */
async function unwrapFileKey(
  stanzas: Stanza[],
  identities: readonly AgeIdentity[],
  passphrase: string | undefined,
): Promise<Buffer | undefined> {
  const scryptStanzas = stanzas.filter((stanza) => stanza.args[0] === 'scrypt');
  if (scryptStanzas.length > 0) {
    // age: a passphrase-encrypted file has exactly one stanza, so that no one else can open it.
    if (stanzas.length !== 1) throw malformed('an scrypt stanza is not the only stanza of the header');
    const [stanza] = scryptStanzas as [Stanza];
    const salt = stanza.args.length === 3 ? unbase64(stanza.args[1]!) : undefined;
    const factorText = stanza.args[2] ?? '';
    if (
      salt?.length !== SCRYPT_SALT_SIZE ||
      !/^[1-9][0-9]?$/.test(factorText) ||
      stanza.body.length !== FILE_KEY_SIZE + TAG_SIZE
    )
      throw malformed('the scrypt stanza is malformed');
    const workFactor = Number(factorText);
    if (workFactor > MAX_SCRYPT_WORK_FACTOR)
      throw malformed(`the scrypt work factor ${workFactor} is above ${MAX_SCRYPT_WORK_FACTOR}`);
    if (passphrase === undefined) return undefined;
    return open(await scryptKey(passphrase, salt, workFactor), ZERO_NONCE, stanza.body);
  }
  const keys = identities.map((identity) => {
    const decoded = bech32Decode(identity.secretKey)!;
    const privateKey = privateKeyObject(decoded.data);
    return { privateKey, ours: rawPublicKey(privateKey) };
  });
  for (const stanza of stanzas) {
    if (stanza.args[0] !== 'X25519') continue;
    const share = stanza.args.length === 2 ? unbase64(stanza.args[1]!) : undefined;
    if (share?.length !== 32 || stanza.body.length !== FILE_KEY_SIZE + TAG_SIZE)
      throw malformed('an X25519 stanza is malformed');
    for (const { privateKey, ours } of keys) {
      let shared: Buffer;
      try {
        shared = diffieHellman({ privateKey, publicKey: publicKeyObject(share) });
      } catch {
        throw malformed('an X25519 stanza holds an invalid share');
      }
      if (shared.every((byte) => byte === 0)) throw malformed('an X25519 stanza holds a low-order share');
      const wrapKey = hkdf(shared, Buffer.concat([share, ours]), X25519_LABEL);
      const fileKey = open(wrapKey, ZERO_NONCE, stanza.body);
      if (fileKey) return fileKey;
    }
  }
  return undefined;
}

/** The `DecryptionError` for a file none of the identities (or the passphrase) opens. */
function notOpened(what: string, stanzas: Stanza[], options: AgeDecryptOptions): DecryptionError {
  const byPassphrase = stanzas.some((stanza) => stanza.args[0] === 'scrypt');
  const expected = options.expectedRecipients?.length
    ? options.expectedRecipients
    : byPassphrase
      ? [AGE_PASSPHRASE_RECIPIENT]
      : [];
  const tried = options.identities.map((identity) => identity.recipient);
  if (options.passphrase !== undefined) tried.push(AGE_PASSPHRASE_RECIPIENT);
  return new DecryptionError(what, expected, tried);
}

// --- payload ---

/** Bytes gathered before a batch of chunks is sealed or opened: one copy per batch. */
const BATCH_SIZE = 1024 * 1024;
/**
 * Batches handed to the worker thread before the oldest is awaited. Memory with a thread: up to
 * three batches in and out (~6 MiB) plus the input chunk being cut.
 */
const BATCHES_IN_FLIGHT = 3;

/** `parts` without their first `count` bytes (views, no copy). */
function dropBytes(parts: Buffer[], count: number): Buffer[] {
  let index = 0;
  let left = count;
  while (index < parts.length && left >= parts[index]!.length) {
    left -= parts[index]!.length;
    index += 1;
  }
  const rest = parts.slice(index);
  if (left > 0 && rest.length > 0) rest[0] = rest[0]!.subarray(left);
  return rest;
}

/**
 * Cuts `first` and the rest of `iterator` into batches of whole `unit`s (64 KiB of plaintext to
 * seal, 64 KiB + 16 of ciphertext to open) and runs them through `cipher` in order. At least
 * one byte stays behind until the source ends: only then is the last chunk, which carries the
 * last-chunk flag, known.
 */
async function* runChunks(
  first: Buffer,
  iterator: AsyncIterator<Uint8Array>,
  unit: number,
  cipher: AgeChunkCipher,
  depth: number,
  onFailure: (counter: number) => Error,
): ByteStream {
  const inflight: Promise<Buffer>[] = [];
  let counter = 0;
  let parts: Buffer[] = first.length > 0 ? [first] : [];
  let total = first.length;
  const submit = (data: Buffer, count: number, last: boolean) => {
    const result = cipher.run(counter, data, last);
    // Awaited in order below; marked handled so that a later batch's failure is not reported
    // as unhandled while an earlier one is awaited.
    result.catch(() => {});
    inflight.push(result);
    counter += count;
  };
  const settle = async (): Promise<Buffer> => {
    try {
      return await inflight.shift()!;
    } catch (error) {
      throw error instanceof ChunkAuthenticationError ? onFailure(error.counter) : error;
    }
  };
  for (;;) {
    const next = await iterator.next();
    if (next.done) break;
    parts.push(Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength));
    total += next.value.byteLength;
    if (total <= BATCH_SIZE + unit) continue;
    const count = Math.floor((total - 1) / unit);
    const cut = count * unit;
    const batch = Buffer.concat(parts, cut);
    parts = dropBytes(parts, cut);
    total -= cut;
    submit(batch, count, false);
    while (inflight.length >= depth) yield await settle();
  }
  submit(Buffer.concat(parts, total), Math.max(1, Math.ceil(total / unit)), true);
  while (inflight.length > 0) yield await settle();
}

export interface AgeEncryptOptions {
  /** `age1…` X25519 public keys; the file opens with the secret key of any one of them. */
  recipients?: readonly string[];
  /**
   * A passphrase instead of recipients (age's scrypt stanza, what `age -p` writes): the file
   * opens with it alone. Throws `ConfigError` when combined with recipients.
   */
  passphrase?: string;
  /** scrypt's work factor, log2 N, for `passphrase` (default 18, as age; at most 22). */
  workFactor?: number;
  /**
   * Seal the chunks on a worker thread, beside the thread that reads and uploads (default
   * `false`). Worth it for an archive; starting the thread costs a few tens of milliseconds.
   */
  thread?: boolean;
}

/**
 * Encrypts a byte stream into an age file, streaming: header, 16-byte nonce, then one sealed
 * chunk per 64 KiB, yielded in batches of about 1 MiB. The source is released when the consumer
 * stops early.
 *
 * @example
 * const sealed = encryptAge(compress(packTar(records)), { recipients: ['age1…'], thread: true });
 */
export async function* encryptAge(source: AsyncIterable<Uint8Array>, options: AgeEncryptOptions): ByteStream {
  const fileKey = randomBytes(FILE_KEY_SIZE);
  const nonce = randomBytes(PAYLOAD_NONCE_SIZE);
  const payloadKey = hkdf(fileKey, nonce, 'payload');
  const header = Buffer.concat([await buildHeader(fileKey, options), nonce]);
  const iterator = source[Symbol.asyncIterator]();
  const thread = options.thread === true;
  const cipher = new AgeChunkCipher(payloadKey, 'seal', thread);
  try {
    yield header;
    yield* runChunks(
      Buffer.alloc(0),
      iterator,
      AGE_CHUNK_SIZE,
      cipher,
      thread ? BATCHES_IN_FLIGHT : 1,
      (counter) => malformed(`sealing chunk ${counter} failed`),
    );
  } finally {
    await cipher.close();
    await iterator.return?.();
  }
}

export interface AgeDecryptOptions {
  /** Identities to try; the first whose recipient the file was encrypted to opens it. */
  identities: readonly AgeIdentity[];
  /** A passphrase, for a file encrypted with one (an scrypt stanza, `age -p`). */
  passphrase?: string;
  /** The recipients the file is known to be encrypted to, named in the error when no identity fits. */
  expectedRecipients?: readonly string[];
  /** What is being decrypted, for error messages, e.g. `"backup_20261121_101500.tar.gz.age"`. */
  what?: string;
  /**
   * Open the chunks on a worker thread, beside the thread that decompresses, hashes and writes
   * (default `false`). Worth it for an archive; starting the thread costs a few tens of
   * milliseconds.
   */
  thread?: boolean;
}

/**
 * Decrypts an age file, streaming. The header is read and the file key unwrapped before the
 * first byte is yielded: with no fitting identity it throws `DecryptionError` at once. A chunk
 * that fails authentication, a truncated or extended file throws `IntegrityError`.
 *
 * The STREAM chunks are fixed-size, so chunk `i` starts at `header + 16 + i × (64 KiB + 16)`;
 * bk reads the object in order (its ranged reads are yielded in order too) and decrypts as it
 * goes, in batches of about 1 MiB (16 chunks).
 */
export async function* decryptAge(source: AsyncIterable<Uint8Array>, options: AgeDecryptOptions): ByteStream {
  const what = options.what ?? 'the encrypted object';
  const iterator = source[Symbol.asyncIterator]();
  let cipher: AgeChunkCipher | undefined;
  try {
    let pending = Buffer.alloc(0);
    const pull = async (): Promise<boolean> => {
      const next = await iterator.next();
      if (next.done) return false;
      pending = pending.length === 0 ? Buffer.from(next.value) : Buffer.concat([pending, next.value]);
      return true;
    };
    // The header ends at the first "\n--- …\n".
    let headerEnd = -1;
    for (;;) {
      const dashes = pending.indexOf('\n--- ');
      if (dashes >= 0) headerEnd = pending.indexOf('\n', dashes + 1);
      if (headerEnd >= 0) break;
      if (pending.length > MAX_HEADER) throw malformed(`${what}'s header is longer than 1 MiB`);
      if (!(await pull())) throw malformed(`${what} ends inside its header`);
    }
    const { stanzas, macInput, mac } = parseHeader(pending.subarray(0, headerEnd + 1).toString('latin1'));
    const fileKey = await unwrapFileKey(stanzas, options.identities, options.passphrase);
    if (!fileKey) throw notOpened(what, stanzas, options);
    if (!timingSafeEqual(headerMac(fileKey, macInput), mac))
      throw new IntegrityError(`The header of ${what} fails its MAC: it was altered.`);
    pending = pending.subarray(headerEnd + 1);
    while (pending.length < PAYLOAD_NONCE_SIZE) {
      if (!(await pull())) throw malformed(`${what} ends before its payload`);
    }
    const payloadKey = hkdf(fileKey, pending.subarray(0, PAYLOAD_NONCE_SIZE), 'payload');
    const thread = options.thread === true;
    cipher = new AgeChunkCipher(payloadKey, 'open', thread);
    yield* runChunks(
      Buffer.from(pending.subarray(PAYLOAD_NONCE_SIZE)),
      iterator,
      AGE_SEALED_CHUNK_SIZE,
      cipher,
      thread ? BATCHES_IN_FLIGHT : 1,
      (counter) =>
        new IntegrityError(
          `Chunk ${counter} of ${what} fails authentication: the object was altered, truncated or extended.`,
        ),
    );
  } finally {
    await cipher?.close();
    await iterator.return?.();
  }
}

async function* oneChunk(bytes: Uint8Array): ByteStream {
  yield bytes;
}

/**
 * Adds recipients to an age file without re-encrypting it: the header is read, its file key
 * unwrapped with one of `identities`, and a header with the old stanzas plus one per new
 * recipient (and a new MAC) is yielded, then the payload unchanged. Streaming: memory is the
 * header and the chunks passing through.
 *
 * @throws {DecryptionError} before anything is yielded when no identity opens the file.
 */
export async function* rewrapAge(
  source: AsyncIterable<Uint8Array>,
  options: AgeDecryptOptions & { addRecipients: readonly string[] },
): ByteStream {
  const what = options.what ?? 'the encrypted object';
  for (const recipient of options.addRecipients) parseRecipient(recipient);
  const iterator = source[Symbol.asyncIterator]();
  try {
    let pending = Buffer.alloc(0);
    let headerEnd = -1;
    for (;;) {
      const dashes = pending.indexOf('\n--- ');
      if (dashes >= 0) headerEnd = pending.indexOf('\n', dashes + 1);
      if (headerEnd >= 0) break;
      if (pending.length > MAX_HEADER) throw malformed(`${what}'s header is longer than 1 MiB`);
      const next = await iterator.next();
      if (next.done) throw malformed(`${what} ends inside its header`);
      pending = Buffer.concat([pending, next.value]);
    }
    const headerText = pending.subarray(0, headerEnd + 1).toString('latin1');
    const { stanzas, macInput, mac } = parseHeader(headerText);
    if (stanzas.some((stanza) => stanza.args[0] === 'scrypt'))
      throw new ConfigError(
        `${what} is encrypted with a passphrase, which age allows as the only way to open a file: it cannot take more recipients. Restore it and back it up again to recipients instead.`,
      );
    const fileKey = await unwrapFileKey(stanzas, options.identities, options.passphrase);
    if (!fileKey) throw notOpened(what, stanzas, options);
    if (!timingSafeEqual(headerMac(fileKey, macInput), mac))
      throw new IntegrityError(`The header of ${what} fails its MAC: it was altered.`);
    // The old stanzas stay byte for byte; the new ones go before the MAC line.
    let header = macInput.slice(0, -'---'.length);
    for (const recipient of options.addRecipients) header += x25519Stanza(fileKey, recipient);
    header += '---';
    yield Buffer.concat([
      Buffer.from(`${header} ${base64(headerMac(fileKey, header))}\n`),
      pending.subarray(headerEnd + 1),
    ]);
    for (;;) {
      const next = await iterator.next();
      if (next.done) break;
      yield next.value;
    }
  } finally {
    await iterator.return?.();
  }
}

/** Encrypts a small object whole (the sidecar manifest). */
export async function encryptAgeBytes(plaintext: Uint8Array, options: AgeEncryptOptions): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const part of encryptAge(oneChunk(plaintext), options)) parts.push(part);
  return Buffer.concat(parts);
}

/** Decrypts a small age file whole. */
export async function decryptAgeBytes(sealed: Uint8Array, options: AgeDecryptOptions): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const part of decryptAge(oneChunk(sealed), options)) parts.push(part);
  return Buffer.concat(parts);
}
