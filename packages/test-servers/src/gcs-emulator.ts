import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startProcess } from './process.ts';

/** A running GCS emulator (firebase-tools' Cloud Storage emulator, without its Java rules runtime). */
export interface GcsEmulator {
  /** `http://127.0.0.1:PORT`; give it to the client as `STORAGE_EMULATOR_HOST`. */
  host: string;
  projectId: string;
  /** A bucket that exists from the start (`<projectId>.appspot.com`); any other is created by its first object request. */
  bucket: string;
  /** The temp directory holding the emulator's blobs and its log; removed by `stop()`. */
  dir: string;
  /** Stops the emulator by PID and removes `dir`. */
  stop(): Promise<void>;
}

const LAUNCHER = fileURLToPath(new URL('./gcs-emulator.cjs', import.meta.url));

/**
 * Starts a private GCS emulator on a free loopback port, with a fresh temp dir as its `TMPDIR`,
 * and waits until `GET /b` answers 200. It serves the JSON API routes `@google-cloud/storage`
 * uses, with limits: no bucket creation, no multi-request resumable uploads (it finalises after
 * the first PUT), request bodies of at most 130 MB, preconditions (`ifGenerationMatch`) ignored,
 * downloads read whole into memory. No network access, no Java.
 *
 * @example
 * const emulator = await startGcsEmulator();
 * process.env.STORAGE_EMULATOR_HOST = emulator.host;
 * const storage = new Storage({ projectId: emulator.projectId });
 * await storage.bucket(emulator.bucket).file('a.txt').save('hello');
 * await emulator.stop();
 */
export async function startGcsEmulator(): Promise<GcsEmulator> {
  const projectId = 'demo-bk';
  const dir = await mkdtemp(join(tmpdir(), 'bk-gcs-emulator-'));
  for (let attempt = 1; ; attempt += 1) {
    const port = await freePort();
    const host = `http://127.0.0.1:${port}`;
    try {
      const server = await startProcess({
        command: process.execPath,
        args: [LAUNCHER, String(port), projectId],
        logFile: join(dir, `emulator-${port}.log`),
        cwd: dir,
        env: { ...process.env, TMPDIR: dir, STORAGE_EMULATOR_HOST: undefined },
        ready: async () => (await fetch(`${host}/b`, { signal: AbortSignal.timeout(2_000) })).status === 200,
      });
      return {
        host,
        projectId,
        bucket: `${projectId}.appspot.com`,
        dir,
        stop: async () => {
          await server.stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
    } catch (error) {
      // Another process may have taken the port between the check and the bind. The last
      // failure keeps `dir`: the error names the log inside it.
      if (attempt >= 3) throw error;
    }
  }
}
