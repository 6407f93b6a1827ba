import { describe, expect, it } from 'vitest';
import { BkError, BodyReader, ConfigError, checkStorageKey } from '../src/index.ts';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

async function* pieces(...parts: string[]) {
  for (const part of parts) yield bytes(part);
}

/** A body that yields `parts`, then stalls forever; records whether `return()` was called. */
function stalling(...parts: string[]) {
  const state = { returned: false, pulls: 0 };
  const iterator: AsyncIterator<Uint8Array> = {
    next: () => {
      state.pulls += 1;
      const part = parts.shift();
      return part === undefined
        ? new Promise(() => {})
        : Promise.resolve({ done: false, value: bytes(part) });
    },
    return: async () => {
      state.returned = true;
      return { done: true, value: undefined };
    },
  };
  return { body: { [Symbol.asyncIterator]: () => iterator }, state };
}

function hasCode(code: string) {
  return (error: unknown) => BkError.isInstance(error) && error.code === code;
}

describe('BodyReader', () => {
  it('reads exact sizes across chunk boundaries, splitting chunks and keeping the rest', async () => {
    const reader = new BodyReader(pieces('abc', 'defgh', 'ij', 'klmnopq'));
    expect(text(await reader.read(4))).toBe('abcd');
    expect(text(await reader.read(2))).toBe('ef');
    expect(text(await reader.read(5))).toBe('ghijk');
    expect(text(await reader.read(1))).toBe('l');
    expect(text(await reader.read(100))).toBe('mnopq');
    expect((await reader.read(4)).byteLength).toBe(0);
  });

  it('returns a short view of one allocation when the body ends early, and owns its bytes', async () => {
    const chunk = bytes('hello');
    const reader = new BodyReader(chunk);
    const read = await reader.read(64);
    expect(text(read)).toBe('hello');
    expect(read.buffer.byteLength).toBeGreaterThanOrEqual(64);
    chunk.fill(0);
    expect(text(read)).toBe('hello');
    expect(await reader.hasMore()).toBe(false);
  });

  it('returns the whole allocation when a read is filled exactly', async () => {
    const reader = new BodyReader(pieces('ab', 'cd'));
    const read = await reader.read(4);
    expect(read.byteLength).toBe(4);
    expect(read.byteOffset === 0 || read.buffer.byteLength > 4).toBe(true);
    expect(text(read)).toBe('abcd');
  });

  it('skips empty chunks in next(), read() and hasMore()', async () => {
    const reader = new BodyReader(pieces('', 'a', '', '', 'bc', ''));
    expect(text((await reader.next())!)).toBe('a');
    expect(await reader.hasMore()).toBe(true);
    expect(text(await reader.read(2))).toBe('bc');
    expect(await reader.hasMore()).toBe(false);
    expect(await reader.next()).toBeUndefined();
    const empty = new BodyReader(pieces('', ''));
    expect(await empty.hasMore()).toBe(false);
    expect((await empty.read(8)).byteLength).toBe(0);
  });

  it('hasMore() looks one chunk ahead and the next call returns that chunk', async () => {
    const reader = new BodyReader(pieces('ab', 'cd'));
    expect(text(await reader.read(2))).toBe('ab');
    expect(await reader.hasMore()).toBe(true);
    expect(await reader.hasMore()).toBe(true);
    expect(text((await reader.next())!)).toBe('cd');
    expect(await reader.hasMore()).toBe(false);
  });

  it('refuses a read size that is not a positive integer', async () => {
    const reader = new BodyReader(pieces('ab'));
    await expect(reader.read(0)).rejects.toBeInstanceOf(RangeError);
    await expect(reader.read(1.5)).rejects.toBeInstanceOf(RangeError);
  });

  it('rejects a pending read at once with BK_ABORTED when the signal aborts, and releases without waiting', async () => {
    const { body, state } = stalling('abc');
    const controller = new AbortController();
    const reader = new BodyReader(body, controller.signal);
    const read = reader.read(10);
    await new Promise((resolve) => setImmediate(resolve));
    expect(state.pulls).toBe(2);
    controller.abort();
    await expect(read).rejects.toSatisfy(hasCode('BK_ABORTED'));
    // The stalled pull never settles: release() starts return() but does not wait for it.
    await reader.release();
    expect(state.returned).toBe(true);
    // Released: the body is over for this reader.
    expect(await reader.next()).toBeUndefined();
  });

  it('rejects before pulling when the signal is already aborted, with a bk reason kept', async () => {
    const { body, state } = stalling('abc');
    const reason = new ConfigError('stop');
    const reader = new BodyReader(body, AbortSignal.abort(reason));
    await expect(reader.next()).rejects.toBe(reason);
    expect(state.pulls).toBe(0);
  });

  it('rethrows the body error unchanged, and release() then leaves the body alone', async () => {
    const failure = new Error('disk on fire');
    let returned = false;
    const body = {
      [Symbol.asyncIterator]: (): AsyncIterator<Uint8Array> => ({
        next: () => Promise.reject(failure),
        return: async () => {
          returned = true;
          return { done: true, value: undefined };
        },
      }),
    };
    const reader = new BodyReader(body, new AbortController().signal);
    await expect(reader.read(4)).rejects.toBe(failure);
    await reader.release();
    expect(returned).toBe(false);
  });

  it('release() returns a body not read to the end, once, and not one read to the end', async () => {
    let returns = 0;
    async function* body() {
      try {
        yield bytes('a');
        yield bytes('b');
      } finally {
        returns += 1;
      }
    }
    const partly = new BodyReader(body());
    await partly.next();
    await partly.release();
    await partly.release();
    expect(returns).toBe(1);
    expect(await partly.next()).toBeUndefined();

    returns = 0;
    const whole = new BodyReader(body());
    expect(text(await whole.read(10))).toBe('ab');
    await whole.release();
    expect(returns).toBe(1);
  });
});

describe('checkStorageKey', () => {
  it('returns a valid key unchanged', () => {
    expect(checkStorageKey('nightly/backup.tar.gz')).toBe('nightly/backup.tar.gz');
    expect(checkStorageKey('a..b/.c')).toBe('a..b/.c');
  });

  it.each([
    ['', 'empty'],
    ['/abs', 'absolute'],
    ['a\\b', 'backslash'],
    ['a\0b', 'NUL'],
    ['a//b', 'segment'],
    ['a/', 'segment'],
    ['./a', 'segment'],
    ['a/../b', 'segment'],
    ['..', 'segment'],
  ])('refuses %j with ConfigError (%s)', (key, reason) => {
    expect(() => checkStorageKey(key)).toThrow(ConfigError);
    expect(() => checkStorageKey(key)).toThrow(reason);
  });
});

describe('BodyReader.recycle', () => {
  it('refills a recycled buffer instead of allocating', async () => {
    const reader = new BodyReader(
      (async function* () {
        for (let index = 0; index < 4; index += 1) yield new Uint8Array(4).fill(index);
      })(),
    );
    const first = await reader.read(8);
    expect([...first]).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    reader.recycle(first);
    const second = await reader.read(8);
    expect(second.buffer).toBe(first.buffer);
    expect([...second]).toEqual([2, 2, 2, 2, 3, 3, 3, 3]);
  });
});
