import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  agePassphraseKey,
  BkError,
  backup,
  collect,
  DecryptionError,
  decryptAge,
  decryptAgeBytes,
  type Entry,
  encryptAge,
  encryptAgeBytes,
  formatAgeIdentityFile,
  generateAgeIdentity,
  inspect,
  list,
  MemoryStorage,
  manifestEntries,
  parseAgeIdentities,
  prune,
  type Restorer,
  rekey,
  restore,
  rewrapAge,
  type Source,
  sealedSummary,
  verify,
} from '../src/index.ts';

const work = mkdtempSync(join(tmpdir(), 'bk-age-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function hasAge(): boolean {
  try {
    execFileSync('age', ['--version']);
    return true;
  } catch {
    return false;
  }
}

async function* chunks(data: Uint8Array, size: number): AsyncIterable<Uint8Array> {
  for (let offset = 0; offset < data.length; offset += size) yield data.subarray(offset, offset + size);
}

const MARKER = 'secret-marker-4f1c9a';

function source(): Source {
  const files: [string, Uint8Array][] = [
    [`etc/${MARKER}.conf`, new TextEncoder().encode(`password=${MARKER}\n`.repeat(1000))],
    ['var/blob.bin', randomBytes(300_000)],
  ];
  return {
    kind: 'test',
    name: 'files',
    describe: async () => ({ version: '1' }),
    async *backup(): AsyncIterable<Entry> {
      for (const [path, data] of files) {
        yield { path, size: data.byteLength, body: chunks(data, 70_000) };
      }
    },
  };
}

function recorder(): Restorer & { restored: Map<string, number> } {
  const restored = new Map<string, number>();
  return {
    kind: 'test',
    name: 'files',
    restored,
    async restore(entries) {
      for await (const entry of entries) restored.set(entry.path, (await collect(entry.body!)).byteLength);
      return { entries: restored.size, bytes: 0 };
    },
  };
}

describe('the age format', () => {
  it.runIf(hasAge())('round-trips with the stock age at every chunk boundary', async () => {
    const identity = generateAgeIdentity();
    const keyFile = join(work, 'key.txt');
    writeFileSync(keyFile, formatAgeIdentityFile(identity));
    expect(execFileSync('age-keygen', ['-y', keyFile]).toString().trim()).toBe(identity.recipient);
    for (const size of [0, 1, 65_536, 65_537, 200_000]) {
      const data = randomBytes(size);
      const other = generateAgeIdentity().recipient;
      const sealed = await encryptAgeBytes(data, { recipients: [other, identity.recipient] });
      writeFileSync(join(work, 'ours.age'), sealed);
      expect(
        execFileSync('age', ['-d', '-i', keyFile, join(work, 'ours.age')], { maxBuffer: 1 << 24 }).equals(
          data,
        ),
      ).toBe(true);
      const threaded = await collect(
        encryptAge(chunks(data, 9_999), { recipients: [identity.recipient], thread: true }),
      );
      writeFileSync(join(work, 'threaded.age'), threaded);
      expect(
        execFileSync('age', ['-d', '-i', keyFile, join(work, 'threaded.age')], { maxBuffer: 1 << 24 }).equals(
          data,
        ),
      ).toBe(true);
      execFileSync('age', ['-e', '-r', identity.recipient, '-o', join(work, 'theirs.age')], { input: data });
      const theirs = readFileSync(join(work, 'theirs.age'));
      const identities = parseAgeIdentities(readFileSync(keyFile, 'utf8'));
      expect((await decryptAgeBytes(theirs, { identities })).equals(data)).toBe(true);
      expect(
        Buffer.from(await collect(decryptAge(chunks(theirs, 5_000), { identities, thread: true }))).equals(
          data,
        ),
      ).toBe(true);
    }
  });

  it.each([false, true])(
    'decrypts past its 1 MiB batches, at exact chunk multiples too (thread: %s)',
    async (thread) => {
      const identity = generateAgeIdentity();
      for (const [size, piece] of [
        [32 * 65_536, 100_003],
        [3_000_000, 1 << 20],
        [17 * 65_536 + 5, 65_552],
        [9 * 1024 * 1024 + 3, 65_536],
      ] as const) {
        const data = randomBytes(size);
        const sealed = await collect(
          encryptAge(chunks(data, piece), { recipients: [identity.recipient], thread }),
        );
        const back: Uint8Array[] = [];
        for await (const part of decryptAge(chunks(sealed, piece), { identities: [identity], thread }))
          back.push(part);
        expect(Buffer.concat(back).equals(data)).toBe(true);
        expect((await decryptAgeBytes(sealed, { identities: [identity] })).equals(data)).toBe(true);
        const flipped = Buffer.from(sealed);
        flipped[Math.floor(flipped.length / 3)]! ^= 1;
        await expect(
          collect(decryptAge(chunks(flipped, piece), { identities: [identity], thread })),
        ).rejects.toMatchObject({ code: 'BK_INTEGRITY' });
        await expect(
          collect(
            decryptAge(chunks(sealed.subarray(0, sealed.length - 65_552), piece), {
              identities: [identity],
              thread,
            }),
          ),
        ).rejects.toMatchObject({ code: 'BK_INTEGRITY' });
        await expect(
          decryptAgeBytes(sealed.subarray(0, sealed.length - 1), { identities: [identity] }),
        ).rejects.toMatchObject({ code: 'BK_INTEGRITY' });
      }
    },
  );

  it('streams in any chunking, and fails on a wrong key, a flipped bit or a cut', async () => {
    const identity = generateAgeIdentity();
    const data = randomBytes(200_000);
    const parts: Uint8Array[] = [];
    for await (const part of encryptAge(chunks(data, 7_777), { recipients: [identity.recipient] }))
      parts.push(part);
    const sealed = Buffer.concat(parts);
    const back: Uint8Array[] = [];
    for await (const part of decryptAge(chunks(sealed, 1_000), { identities: [identity] })) back.push(part);
    expect(Buffer.concat(back)).toEqual(data);

    const wrong = generateAgeIdentity();
    const error = await decryptAgeBytes(sealed, {
      identities: [wrong],
      expectedRecipients: [identity.recipient],
    }).catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(DecryptionError);
    expect((error as Error).message).toContain(identity.recipient);

    const flipped = Buffer.from(sealed);
    flipped[flipped.length - 100]! ^= 1;
    await expect(decryptAgeBytes(flipped, { identities: [identity] })).rejects.toMatchObject({
      code: 'BK_INTEGRITY',
    });
    // Cut exactly at a chunk boundary: the last chunk left lacks the last-chunk flag.
    const headerLength = sealed.length - 16 - 3 * (65_536 + 16) - (200_000 - 3 * 65_536 + 16);
    await expect(
      decryptAgeBytes(sealed.subarray(0, headerLength + 16 + 2 * (65_536 + 16)), { identities: [identity] }),
    ).rejects.toMatchObject({ code: 'BK_INTEGRITY' });
  });
});

/**
 * Runs the stock `age` with its passphrase prompts answered: age reads a passphrase only from a
 * terminal, so it runs under `script`, which gives it one, and the lines are typed into it.
 */
async function ageOnTerminal(args: string[], lines: string[]): Promise<void> {
  const child = spawn('script', ['-qec', ['age', ...args].join(' '), '/dev/null'], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  for (const line of lines) {
    child.stdin.write(`${line}\n`);
    await new Promise((resolve) => setTimeout(resolve, 700));
  }
  const code = await exited;
  child.stdin.destroy();
  if (code !== 0) throw new Error(`age ${args.join(' ')} exited with ${code}: ${stderr}`);
}

describe('a passphrase (scrypt stanza)', () => {
  it.runIf(hasAge())(
    'round-trips with the stock age -p / age -d both ways',
    async () => {
      const passphrase = 'correct-horse-battery-staple';
      const data = randomBytes(200_000);
      // bk → age -d (age's default work factor, 18).
      const ours = await collect(encryptAge(chunks(data, 50_000), { passphrase, thread: true }));
      expect(Buffer.from(ours).subarray(0, 60).toString('latin1')).toMatch(
        /^age-encryption.org\/v1\n-> scrypt \S{22} 18\n/,
      );
      writeFileSync(join(work, 'ours-p.age'), ours);
      await ageOnTerminal(['-d', '-o', join(work, 'ours-p.out'), join(work, 'ours-p.age')], [passphrase]);
      expect(readFileSync(join(work, 'ours-p.out')).equals(data)).toBe(true);
      // age -p → bk.
      writeFileSync(join(work, 'plain-p.bin'), data);
      await ageOnTerminal(
        ['-p', '-o', join(work, 'theirs-p.age'), join(work, 'plain-p.bin')],
        [passphrase, passphrase],
      );
      const theirs = readFileSync(join(work, 'theirs-p.age'));
      expect((await decryptAgeBytes(theirs, { identities: [], passphrase })).equals(data)).toBe(true);
      const wrong = await decryptAgeBytes(theirs, { identities: [], passphrase: 'wrong' }).catch(
        (thrown: unknown) => thrown,
      );
      expect(wrong).toBeInstanceOf(DecryptionError);
      expect((wrong as Error).message).toContain('passphrase');
    },
    120_000,
  );

  it('opens only with the passphrase, alone, and cannot take more recipients', async () => {
    const identity = generateAgeIdentity();
    const data = randomBytes(70_000);
    const sealed = await encryptAgeBytes(data, { passphrase: 'p4ss', workFactor: 10 });
    expect((await decryptAgeBytes(sealed, { identities: [], passphrase: 'p4ss' })).equals(data)).toBe(true);
    for (const options of [{ identities: [identity] }, { identities: [], passphrase: 'p4ss ' }]) {
      const error = await decryptAgeBytes(sealed, options).catch((thrown: unknown) => thrown);
      expect(error).toBeInstanceOf(DecryptionError);
      expect((error as DecryptionError).expected).toEqual(['a passphrase (scrypt)']);
    }
    await expect(
      encryptAgeBytes(data, { passphrase: 'p4ss', recipients: [identity.recipient] }),
    ).rejects.toMatchObject({ code: 'BK_CONFIG' });
    await expect(
      collect(
        rewrapAge(chunks(sealed, 10_000), {
          identities: [],
          passphrase: 'p4ss',
          addRecipients: [identity.recipient],
        }),
      ),
    ).rejects.toMatchObject({ code: 'BK_CONFIG' });
    // A header with an scrypt stanza beside another is refused, as age refuses it.
    const text = sealed.toString('latin1');
    const stanzaEnd = text.indexOf('\n---');
    const doubled = Buffer.concat([
      Buffer.from(`${text.slice(0, stanzaEnd)}\n-> X25519 ${'A'.repeat(43)}\n${'A'.repeat(43)}`, 'latin1'),
      sealed.subarray(stanzaEnd),
    ]);
    await expect(decryptAgeBytes(doubled, { identities: [], passphrase: 'p4ss' })).rejects.toMatchObject({
      code: 'BK_INTEGRITY',
    });
  });
});

describe('an encrypted backup', () => {
  it('stores no name or content in clear, lists without a key and restores with one', async () => {
    const storage = new MemoryStorage();
    const identity = generateAgeIdentity();
    const second = generateAgeIdentity();
    const result = await backup({
      storage,
      components: [source()],
      encryption: { recipients: [identity.recipient, second.recipient] },
    });
    expect(result.key).toBe(`${result.name}.tar.gz.age`);
    for await (const object of storage.list('')) {
      const bytes = Buffer.from(await collect(await storage.get(object.key)));
      expect(bytes.includes(MARKER), object.key).toBe(false);
      expect(bytes.includes('blob.bin'), object.key).toBe(false);
    }
    const listed = await list({ storage });
    expect(listed.map((summary) => [summary.name, summary.key])).toEqual([[result.name, result.key]]);
    const summary = sealedSummary(await collect(await storage.get(result.sidecarKey)));
    expect(summary?.encryption.recipients).toEqual([identity.recipient, second.recipient]);
    expect(summary?.archive.size).toBe(result.size);

    const manifest = await inspect({ storage, name: 'latest', identities: [second.secretKey] });
    const paths: string[] = [];
    for await (const { record } of manifestEntries(storage, manifest, { identities: [second.secretKey] }))
      paths.push(record.path);
    expect(paths).toContain(`etc/${MARKER}.conf`);
    expect(manifest.entryIndex?.key).toBe(`${result.name}.entries.ndjson.gz.age`);
    const restorer = recorder();
    await restore({ storage, name: result.name, restorers: [restorer], identities: [identity.secretKey] });
    expect(restorer.restored.get('var/blob.bin')).toBe(300_000);
    const verified = await verify({ storage, name: result.name, identities: [second.secretKey] });
    expect(verified.entries).toBe(2);
  });

  it('is sealed with a passphrase, recorded without recipients, and opens with it only', async () => {
    const storage = new MemoryStorage();
    const passphrase = 'core-passphrase-4e8d';
    await expect(
      backup({
        storage,
        components: [source()],
        encryption: { passphrase, recipients: [generateAgeIdentity().recipient] } as never,
      }),
    ).rejects.toMatchObject({ code: 'BK_CONFIG' });
    const result = await backup({ storage, components: [source()], encryption: { passphrase } });
    expect(result.key).toBe(`${result.name}.tar.gz.age`);
    for await (const object of storage.list('')) {
      const bytes = Buffer.from(await collect(await storage.get(object.key)));
      expect(bytes.includes(MARKER), object.key).toBe(false);
      expect(bytes.includes(passphrase), object.key).toBe(false);
    }
    const summary = sealedSummary(await collect(await storage.get(result.sidecarKey)));
    expect(summary?.encryption).toEqual({ format: 'age', recipients: [], passphrase: true });
    const keys = [agePassphraseKey(passphrase)];
    const manifest = await inspect({ storage, name: 'latest', identities: keys });
    expect(manifest.encryption).toEqual({ format: 'age', recipients: [], passphrase: true });
    const restorer = recorder();
    await restore({ storage, name: result.name, restorers: [restorer], identities: keys });
    expect(restorer.restored.get('var/blob.bin')).toBe(300_000);
    expect((await verify({ storage, name: result.name, identities: keys })).entries).toBe(2);
    for (const identities of [[agePassphraseKey('wrong')], [generateAgeIdentity().secretKey], undefined]) {
      const refused = recorder();
      const error = await restore({
        storage,
        name: 'latest',
        restorers: [refused],
        ...(identities ? { identities } : {}),
      }).catch((thrown: unknown) => thrown);
      expect(BkError.isInstance(error) && error.code).toBe('BK_DECRYPTION');
      expect((error as Error).message).toContain('passphrase');
      expect((error as Error).message).not.toContain('wrong');
      expect(refused.restored.size).toBe(0);
    }
  }, 60_000);

  it('refuses a wrong or missing key before the restorer sees anything, naming the recipients', async () => {
    const storage = new MemoryStorage();
    const identity = generateAgeIdentity();
    await backup({ storage, components: [source()], encryption: { recipients: [identity.recipient] } });
    for (const identities of [[generateAgeIdentity().secretKey], undefined]) {
      const restorer = recorder();
      const error = await restore({
        storage,
        name: 'latest',
        restorers: [restorer],
        ...(identities ? { identities } : {}),
      }).catch((thrown: unknown) => thrown);
      expect(BkError.isInstance(error) && error.code).toBe('BK_DECRYPTION');
      expect((error as DecryptionError).expected).toEqual([identity.recipient]);
      expect((error as Error).message).toContain(identity.recipient);
      expect(restorer.restored.size).toBe(0);
    }
  });

  it('rekey adds a recipient whose key then restores, without re-encrypting the payload', async () => {
    const storage = new MemoryStorage();
    const first = generateAgeIdentity();
    const added = generateAgeIdentity();
    const result = await backup({
      storage,
      components: [source()],
      encryption: { recipients: [first.recipient] },
    });
    const before = Buffer.from(await collect(await storage.get(result.key)));
    await expect(
      rekey({ storage, name: 'latest', identities: [added.secretKey], addRecipients: [added.recipient] }),
    ).rejects.toMatchObject({ code: 'BK_DECRYPTION' });
    const rekeyed = await rekey({
      storage,
      name: 'latest',
      identities: [first.secretKey],
      addRecipients: [added.recipient, first.recipient],
    });
    expect(rekeyed.added).toEqual([added.recipient]);
    expect(rekeyed.recipients).toEqual([first.recipient, added.recipient]);
    const after = Buffer.from(await collect(await storage.get(result.key)));
    // The payload (everything after the header) is the same bytes.
    const payload = (bytes: Buffer) => bytes.subarray(bytes.indexOf('\n', bytes.indexOf('\n--- ') + 1) + 1);
    expect(payload(after).equals(payload(before))).toBe(true);
    for (const identity of [first, added]) {
      const restorer = recorder();
      await restore({ storage, name: 'latest', restorers: [restorer], identities: [identity.secretKey] });
      expect(restorer.restored.get('var/blob.bin')).toBe(300_000);
      await verify({ storage, name: 'latest', identities: [identity.secretKey] });
    }
  });

  it('is listed and pruned without a key', async () => {
    const storage = new MemoryStorage();
    const identity = generateAgeIdentity();
    const options = { storage, components: [source()], encryption: { recipients: [identity.recipient] } };
    const older = await backup({ ...options, now: () => new Date('2026-01-01T00:00:00Z') });
    const newer = await backup({ ...options, now: () => new Date('2026-01-02T00:00:00Z') });
    expect((await list({ storage })).map((summary) => [summary.name, summary.size])).toEqual([
      [older.name, older.size],
      [newer.name, newer.size],
    ]);
    const pruned = await prune({ storage, keepLast: 1 });
    expect(pruned.deleted).toEqual([older.name]);
    const left: string[] = [];
    for await (const object of storage.list('')) left.push(object.key);
    expect(left).toContain(newer.key);
    expect(left).toContain(newer.sidecarKey);
    expect(left.every((key) => key.startsWith(`${newer.name}.`))).toBe(true);
  });

  it('refuses a recipient that is not an age public key before anything is stored', async () => {
    const storage = new MemoryStorage();
    await expect(
      backup({ storage, components: [source()], encryption: { recipients: ['age1notakey'] } }),
    ).rejects.toMatchObject({ code: 'BK_CONFIG' });
    expect(await list({ storage })).toEqual([]);
  });
});
