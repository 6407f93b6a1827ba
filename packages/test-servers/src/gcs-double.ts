import { createHash, type Hash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CRC32C } from '@google-cloud/storage';
import { listenOnFreePort } from './process.ts';

/**
 * A small stand-in for the GCS JSON API, written from its public documentation, for what the
 * emulator cannot do: multi-request resumable uploads (`Content-Range` chunks, 308 with
 * `Range`, finalise with the total, `DELETE` → 499), `ifGenerationMatch` preconditions, and
 * fault injection. Bodies stream to files in a temp directory, never whole into memory, so a
 * 1 GiB upload costs disk, not RAM. Serves: resumable and multipart uploads, object metadata,
 * media (ranged) reads, list with pages, delete. Single bucket namespace per bucket name.
 */

/** One object as the double keeps it. */
interface StoredObject {
  bucket: string;
  name: string;
  path: string;
  size: number;
  md5Hash: string;
  crc32c: string | undefined;
  generation: string;
  updated: string;
  contentType: string;
}

/** A resumable upload session's state, visible to tests. */
export interface DoubleSession {
  id: string;
  bucket: string;
  name: string;
  /** Bytes persisted so far. */
  persisted: number;
  /** Chunk PUTs that carried bytes, including failed ones. */
  chunkRequests: number;
  state: 'active' | 'final' | 'cancelled';
}

/** Fails a chunk request: `status` answers it with that code; `drop` closes the connection. */
export type ChunkFault = { status: number } | { drop: true };

export interface GcsDoubleOptions {
  /** Whether objects get a crc32c (computed in JavaScript, ~60 MB/s); default true. */
  crc32c?: boolean;
}

interface SessionRecord extends DoubleSession {
  path: string;
  contentType: string;
  ifGenerationMatch: string | undefined;
  md5: Hash;
  crc: CRC32C | undefined;
  object: StoredObject | undefined;
}

/** A running double: its URL, what it holds, and hooks to make it fail. */
export interface GcsDouble {
  /** `http://127.0.0.1:PORT`; give it to the client as `apiEndpoint`. */
  url: string;
  /** Every resumable session, in creation order. */
  sessions: () => DoubleSession[];
  /** Names of the objects in `bucket`. */
  objectNames: (bucket: string) => string[];
  /**
   * Decides, for the `chunkNumber`th (from 1) chunk request of a session, whether it fails.
   * Set to `undefined` to stop failing.
   */
  chunkFault: ((session: DoubleSession, chunkNumber: number) => ChunkFault | undefined) | undefined;
  /** Changes the md5Hash the next finalised upload reports, as a corrupting server would. */
  corruptNextObject: boolean;
  /**
   * Answers as to credentials that may only create objects (`storage.objects.create`): reads,
   * lists, deletes and the replacement of an existing object get 403; uploads of new objects
   * (with or without `ifGenerationMatch=0`) succeed.
   */
  writeOnly: boolean;
  stop: () => Promise<void>;
}

const GRANULARITY = 256 * 1024;

function send(
  response: ServerResponse,
  status: number,
  body?: unknown,
  headers: Record<string, string> = {},
): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  response.end(text);
}

function sendError(response: ServerResponse, status: number, message: string): void {
  send(response, status, { error: { code: status, message, errors: [{ message, reason: String(status) }] } });
}

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function resource(object: StoredObject, url: string): Record<string, unknown> {
  return {
    kind: 'storage#object',
    id: `${object.bucket}/${object.name}/${object.generation}`,
    selfLink: `${url}/storage/v1/b/${object.bucket}/o/${encodeURIComponent(object.name)}`,
    name: object.name,
    bucket: object.bucket,
    generation: object.generation,
    metageneration: '1',
    contentType: object.contentType,
    size: String(object.size),
    md5Hash: object.md5Hash,
    ...(object.crc32c === undefined ? {} : { crc32c: object.crc32c }),
    etag: `${object.generation}-etag`,
    updated: object.updated,
    timeCreated: object.updated,
  };
}

/** Splits a `multipart/related` body into its JSON metadata and its media. */
function parseMultipart(
  body: Buffer,
  contentType: string,
): { metadata: Record<string, unknown>; media: Buffer } {
  const boundary = /boundary="?([^";]+)"?/.exec(contentType)?.[1];
  if (!boundary) throw new Error('no boundary');
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: Buffer[] = [];
  let at = body.indexOf(delimiter);
  while (at !== -1) {
    const start = at + delimiter.byteLength;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const next = body.indexOf(delimiter, start);
    if (next === -1) break;
    parts.push(body.subarray(start + 2, next - 2));
    at = next;
  }
  const [head, data] = parts.map((part) => part.subarray(part.indexOf('\r\n\r\n') + 4));
  if (!head || !data) throw new Error('expected two parts');
  return { metadata: JSON.parse(head.toString()) as Record<string, unknown>, media: data };
}

/**
 * Starts the double on a free loopback port, with its files in a fresh temp directory.
 *
 * @example
 * const double = await startGcsDouble();
 * const client = new Storage({ apiEndpoint: double.url, projectId: 'test' });
 */
export async function startGcsDouble(options: GcsDoubleOptions = {}): Promise<GcsDouble> {
  const withCrc32c = options.crc32c ?? true;
  const dir = await mkdtemp(join(tmpdir(), 'bk-gcs-double-'));
  const objects = new Map<string, StoredObject>();
  const sessions = new Map<string, SessionRecord>();
  let generation = Date.now() * 1000;
  const objectKey = (bucket: string, name: string) => `${bucket}\0${name}`;
  let url = '';

  const double: GcsDouble = {
    url: '',
    sessions: () =>
      [...sessions.values()].map(({ id, bucket, name, persisted, chunkRequests, state }) => ({
        id,
        bucket,
        name,
        persisted,
        chunkRequests,
        state,
      })),
    objectNames: (bucket) =>
      [...objects.values()]
        .filter((object) => object.bucket === bucket)
        .map((object) => object.name)
        .sort(),
    chunkFault: undefined,
    corruptNextObject: false,
    writeOnly: false,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };

  /** Fails with 412 when `ifGenerationMatch` does not hold for the object's current generation. */
  function preconditionFails(
    bucket: string,
    name: string,
    ifGenerationMatch: string | undefined | null,
  ): boolean {
    if (ifGenerationMatch === undefined || ifGenerationMatch === null) return false;
    const current = objects.get(objectKey(bucket, name));
    return ifGenerationMatch === '0' ? current !== undefined : current?.generation !== ifGenerationMatch;
  }

  /** Publishes a finished body: one rename, so a reader sees the old object or the new one. */
  async function publish(
    bucket: string,
    name: string,
    path: string,
    size: number,
    md5Hash: string,
    crc32c: string | undefined,
    contentType: string,
    ifGenerationMatch: string | undefined | null,
  ): Promise<StoredObject | undefined | 'forbidden'> {
    generation += 1;
    const object: StoredObject = {
      bucket,
      name,
      path: join(dir, `object-${generation}`),
      size,
      md5Hash: double.corruptNextObject ? createHash('md5').update('corrupt').digest('base64') : md5Hash,
      crc32c,
      generation: String(generation),
      updated: new Date().toISOString(),
      contentType,
    };
    await rename(path, object.path);
    // Checked after the last await, so no other upload can publish between check and set.
    if (preconditionFails(bucket, name, ifGenerationMatch)) {
      await rm(object.path, { force: true });
      return undefined;
    }
    if (double.writeOnly && objects.has(objectKey(bucket, name))) {
      await rm(object.path, { force: true });
      return 'forbidden';
    }
    double.corruptNextObject = false;
    const previous = objects.get(objectKey(bucket, name));
    objects.set(objectKey(bucket, name), object);
    if (previous) await rm(previous.path, { force: true });
    return object;
  }

  /** Checks `X-Goog-Hash` (`md5=…`, `crc32c=…`) against what arrived. */
  function hashMismatch(header: string | undefined, md5Hash: string, crc32c: string | undefined): boolean {
    for (const pair of (header ?? '').split(',')) {
      const [kind, value] = [
        pair.slice(0, pair.indexOf('=')).trim(),
        pair.slice(pair.indexOf('=') + 1).trim(),
      ];
      if (kind === 'md5' && value !== md5Hash) return true;
      if (kind === 'crc32c' && crc32c !== undefined && value !== crc32c) return true;
    }
    return false;
  }

  async function startSession(
    request: IncomingMessage,
    response: ServerResponse,
    bucket: string,
    query: URLSearchParams,
  ) {
    const body = await readBody(request);
    const metadata = body.byteLength > 0 ? (JSON.parse(body.toString()) as Record<string, unknown>) : {};
    const name = query.get('name') ?? (metadata.name as string | undefined);
    if (!name) return sendError(response, 400, 'Required object name is missing.');
    const ifGenerationMatch = query.get('ifGenerationMatch') ?? undefined;
    if (preconditionFails(bucket, name, ifGenerationMatch))
      return sendError(response, 412, 'Precondition Failed');
    const id = randomBytes(12).toString('hex');
    sessions.set(id, {
      id,
      bucket,
      name,
      persisted: 0,
      chunkRequests: 0,
      state: 'active',
      path: join(dir, `session-${id}`),
      contentType:
        (metadata.contentType as string | undefined) ??
        request.headers['x-upload-content-type']?.toString() ??
        'application/octet-stream',
      ifGenerationMatch,
      md5: createHash('md5'),
      crc: withCrc32c ? new CRC32C() : undefined,
      object: undefined,
    });
    send(response, 200, undefined, {
      location: `${url}/upload/storage/v1/b/${bucket}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`,
    });
  }

  async function putChunk(request: IncomingMessage, response: ServerResponse, session: SessionRecord) {
    const progress = (): Record<string, string> =>
      session.persisted === 0 ? {} : { range: `bytes=0-${session.persisted - 1}` };
    const match = /^bytes (?:(\d+)-(\d+)|\*)\/(\d+|\*)$/.exec(request.headers['content-range'] ?? '');
    if (session.state === 'cancelled') {
      await readBody(request);
      return sendError(response, 499, 'The upload was cancelled.');
    }
    if (session.state === 'final' && session.object) {
      await readBody(request);
      return send(response, 200, resource(session.object, url));
    }
    if (!match) {
      await readBody(request);
      return sendError(response, 400, 'Bad Content-Range.');
    }
    const total = match[3] === '*' ? undefined : Number(match[3]);
    if (match[1] !== undefined) {
      const first = Number(match[1]);
      const last = Number(match[2]);
      session.chunkRequests += 1;
      const fault = double.chunkFault?.(session, session.chunkRequests);
      if (fault && 'drop' in fault) {
        request.socket.destroy();
        return;
      }
      if (fault) {
        await readBody(request);
        return sendError(response, fault.status, 'Injected fault.');
      }
      if (first > session.persisted) {
        await readBody(request);
        return sendError(
          response,
          400,
          `Chunk starts at ${first}, but ${session.persisted} bytes are stored.`,
        );
      }
      const length = last - first + 1;
      if (total === undefined && length % GRANULARITY !== 0) {
        await readBody(request);
        return sendError(response, 400, 'A non-final chunk must be a multiple of 256 KiB.');
      }
      // Bytes already stored (a retry after a lost answer) are skipped, the rest appended.
      let skip = session.persisted - first;
      let received = 0;
      const file = createWriteStream(session.path, { flags: 'a' });
      try {
        for await (const piece of request) {
          const bytes = piece as Buffer;
          received += bytes.byteLength;
          const fresh = skip >= bytes.byteLength ? undefined : bytes.subarray(Math.max(skip, 0));
          skip = Math.max(skip - bytes.byteLength, 0);
          if (!fresh) continue;
          session.md5.update(fresh);
          session.crc?.update(fresh);
          session.persisted += fresh.byteLength;
          if (!file.write(fresh)) await new Promise<void>((resolve) => file.once('drain', () => resolve()));
        }
      } finally {
        await new Promise<void>((resolve) => file.end(() => resolve()));
      }
      if (received !== length) return sendError(response, 400, `Expected ${length} bytes, got ${received}.`);
    } else {
      await readBody(request);
    }
    if (total === undefined || session.persisted < total) return send(response, 308, undefined, progress());
    if (session.persisted > total) return sendError(response, 400, 'More bytes than the declared total.');
    const md5Hash = session.md5.digest('base64');
    const crc32c = session.crc?.toString();
    if (hashMismatch(request.headers['x-goog-hash']?.toString(), md5Hash, crc32c)) {
      session.state = 'cancelled';
      await rm(session.path, { force: true });
      return sendError(response, 400, 'The provided hash does not match the uploaded data.');
    }
    if (total === 0)
      await new Promise((resolve) => createWriteStream(session.path, { flags: 'a' }).end(resolve));
    const object = await publish(
      session.bucket,
      session.name,
      session.path,
      total,
      md5Hash,
      crc32c,
      session.contentType,
      session.ifGenerationMatch,
    );
    if (object === 'forbidden') {
      session.state = 'cancelled';
      return sendError(response, 403, 'The caller does not have storage.objects.delete access.');
    }
    if (!object) {
      session.state = 'cancelled';
      return sendError(response, 412, 'Precondition Failed');
    }
    session.object = object;
    session.state = 'final';
    send(response, 200, resource(session.object, url));
  }

  async function multipartUpload(
    request: IncomingMessage,
    response: ServerResponse,
    bucket: string,
    query: URLSearchParams,
  ) {
    const { metadata, media } = parseMultipart(
      await readBody(request),
      request.headers['content-type'] ?? '',
    );
    const name = query.get('name') ?? (metadata.name as string | undefined);
    if (!name) return sendError(response, 400, 'Required object name is missing.');
    const md5Hash = createHash('md5').update(media).digest('base64');
    let crc32c: string | undefined;
    if (withCrc32c) {
      const crc = new CRC32C();
      crc.update(media);
      crc32c = crc.toString();
    }
    if (
      (metadata.md5Hash !== undefined && metadata.md5Hash !== md5Hash) ||
      (metadata.crc32c !== undefined && crc32c !== undefined && metadata.crc32c !== crc32c)
    )
      return sendError(response, 400, 'Provided MD5 hash does not match the calculated MD5 hash.');
    if (preconditionFails(bucket, name, query.get('ifGenerationMatch')))
      return sendError(response, 412, 'Precondition Failed');
    const path = join(dir, `multipart-${randomBytes(8).toString('hex')}`);
    await new Promise<void>((resolve, reject) =>
      createWriteStream(path)
        .on('error', reject)
        .end(media, () => resolve()),
    );
    const object = await publish(
      bucket,
      name,
      path,
      media.byteLength,
      md5Hash,
      crc32c,
      (metadata.contentType as string | undefined) ?? 'application/octet-stream',
      query.get('ifGenerationMatch'),
    );
    if (object === 'forbidden')
      return sendError(response, 403, 'The caller does not have storage.objects.delete access.');
    if (!object) return sendError(response, 412, 'Precondition Failed');
    send(response, 200, resource(object, url));
  }

  async function sendMedia(request: IncomingMessage, response: ServerResponse, object: StoredObject) {
    const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? '');
    const hashHeader = `crc32c=${object.crc32c ?? ''},md5=${object.md5Hash}`;
    const common = {
      'content-type': object.contentType,
      'x-goog-generation': object.generation,
      'x-goog-stored-content-encoding': 'identity',
    };
    if (!range) {
      response.writeHead(200, { ...common, 'content-length': object.size, 'x-goog-hash': hashHeader });
      if (object.size === 0) return response.end();
      createReadStream(object.path).pipe(response);
      return;
    }
    const start = Number(range[1]);
    const end = Math.min(range[2] === '' ? object.size - 1 : Number(range[2]), object.size - 1);
    if (start >= object.size) return sendError(response, 416, 'The requested range cannot be satisfied.');
    response.writeHead(206, {
      ...common,
      'content-length': end - start + 1,
      'content-range': `bytes ${start}-${end}/${object.size}`,
    });
    createReadStream(object.path, { start, end }).pipe(response);
  }

  function listObjects(response: ServerResponse, bucket: string, query: URLSearchParams) {
    const prefix = query.get('prefix') ?? '';
    const maxResults = Math.min(Number(query.get('maxResults') ?? 1000), 1000);
    const pageToken = query.get('pageToken') ?? '';
    const names = [...objects.values()]
      .filter(
        (object) => object.bucket === bucket && object.name.startsWith(prefix) && object.name > pageToken,
      )
      .sort((a, b) => (a.name < b.name ? -1 : 1));
    const page = names.slice(0, maxResults);
    send(response, 200, {
      kind: 'storage#objects',
      items: page.map((object) => resource(object, url)),
      ...(names.length > maxResults ? { nextPageToken: page.at(-1)?.name } : {}),
    });
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<unknown> {
    const target = new URL(request.url ?? '/', url);
    const query = target.searchParams;
    const path = target.pathname.replace(/^\/(download\/)?storage\/v1/, '');
    const upload = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(target.pathname);
    if (upload) {
      const bucket = decodeURIComponent(upload[1] as string);
      const sessionId = query.get('upload_id');
      if (sessionId !== null) {
        const session = sessions.get(sessionId);
        if (!session) {
          await readBody(request);
          return sendError(response, 404, 'No such upload session.');
        }
        if (request.method === 'DELETE') {
          if (session.state === 'active') {
            session.state = 'cancelled';
            await rm(session.path, { force: true });
          }
          return sendError(response, 499, 'Client Closed Request');
        }
        if (request.method === 'PUT') return putChunk(request, response, session);
      }
      if (request.method === 'POST' && query.get('uploadType') === 'resumable')
        return startSession(request, response, bucket, query);
      if (request.method === 'POST' && query.get('uploadType') === 'multipart')
        return multipartUpload(request, response, bucket, query);
      await readBody(request);
      return sendError(response, 400, 'Unsupported upload.');
    }
    const objectPath = /^\/b\/([^/]+)\/o(?:\/(.+))?$/.exec(path);
    await readBody(request);
    if (double.writeOnly)
      return sendError(response, 403, 'The caller does not have storage.objects.get access.');
    if (!objectPath) return sendError(response, 404, 'Not Found');
    const bucket = decodeURIComponent(objectPath[1] as string);
    if (objectPath[2] === undefined) {
      if (request.method === 'GET') return listObjects(response, bucket, query);
      return sendError(response, 405, 'Method not allowed.');
    }
    const name = decodeURIComponent(objectPath[2]);
    const object = objects.get(objectKey(bucket, name));
    if (!object) return sendError(response, 404, `No such object: ${bucket}/${name}`);
    if (request.method === 'GET') {
      if (query.get('alt') === 'media') return sendMedia(request, response, object);
      return send(response, 200, resource(object, url));
    }
    if (request.method === 'DELETE') {
      if (preconditionFails(bucket, name, query.get('ifGenerationMatch')))
        return sendError(response, 412, 'Precondition Failed');
      objects.delete(objectKey(bucket, name));
      await rm(object.path, { force: true });
      response.writeHead(204).end();
      return;
    }
    return sendError(response, 405, 'Method not allowed.');
  }

  const server: Server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent)
        sendError(response, 500, error instanceof Error ? error.message : String(error));
      else response.destroy();
    });
  });
  // Longer than any client keeps an idle socket, so a reused socket is never closed under it.
  server.keepAliveTimeout = 120_000;
  url = `http://127.0.0.1:${await listenOnFreePort(server)}`;
  double.url = url;
  return double;
}
