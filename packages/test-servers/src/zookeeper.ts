import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { freePort, inNewTempDir, startProcess } from './process.ts';

/** A private standalone ZooKeeper (Debian `zookeeper` 3.8) started by {@link startZookeeper}. */
export interface ZookeeperServer {
  /** `127.0.0.1:PORT`, for a ZooKeeper client's connect string. */
  connectString: string;
  host: '127.0.0.1';
  /** The client port. */
  port: number;
  /**
   * Credentials of the server's super user (random per server), for `addAuthInfo`: a session
   * with them passes every ACL check, e.g. to clean up znodes whose ACL forbids deleting.
   */
  superAuth: { scheme: 'digest'; credentials: string };
  /** The temp dir holding `zoo.cfg`, `data/` and `zookeeper.log`. */
  dir: string;
  /** Stops the JVM by PID (SIGTERM, SIGKILL after 10 s) and removes `dir`. */
  stop(): Promise<void>;
}

/** The Debian jar: its manifest's `Class-Path` names every dependency. */
const ZOOKEEPER_JAR = '/usr/share/java/zookeeper.jar';
/** Optional SLF4J binding so the server logs to stderr (our log file) instead of nowhere. */
const SLF4J_SIMPLE_JAR = '/usr/share/java/slf4j-simple.jar';

/**
 * Sends a four-letter word and resolves with the whole answer (the server closes the connection
 * after it). Rejects after `timeoutMs`: a probe sent while the server starts can hang forever.
 */
function fourLetterWord(host: string, port: number, word: string, timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host, port });
    let answer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`"${word}" to ${host}:${port} got no answer within ${timeoutMs} ms.`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.end(word));
    socket.on('data', (chunk: string) => {
      answer += chunk;
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(answer);
    });
  });
}

/**
 * Starts a private standalone ZooKeeper with `java` directly (not `zkServer.sh`, which reads
 * `/etc/zookeeper`): client port on 127.0.0.1 at a free port below 32768, admin server off, a
 * 1 MB transaction-log preallocation, state in a temp dir, `-Xmx256m`. Ready once the `ruok`
 * four-letter word answers `imok` (each probe with a 2 s timeout). Retries with a new port when
 * the server fails to start. A super user with a random password is configured (`superAuth`).
 */
export async function startZookeeper(): Promise<ZookeeperServer> {
  if (!existsSync(ZOOKEEPER_JAR)) {
    throw new Error(`${ZOOKEEPER_JAR} is missing; install the Debian package "zookeeper".`);
  }
  const classpath = existsSync(SLF4J_SIMPLE_JAR) ? `${ZOOKEEPER_JAR}:${SLF4J_SIMPLE_JAR}` : ZOOKEEPER_JAR;
  const superCredentials = `super:${randomBytes(12).toString('hex')}`;
  const superDigest = `super:${createHash('sha1').update(superCredentials).digest('base64')}`;
  return inNewTempDir('bk-zookeeper-', async (dir) => {
    const port = await freePort();
    const config = join(dir, 'zoo.cfg');
    await mkdir(join(dir, 'data'));
    await writeFile(
      config,
      [
        'tickTime=2000',
        `dataDir=${join(dir, 'data')}`,
        `clientPort=${port}`,
        'clientPortAddress=127.0.0.1',
        'admin.enableServer=false',
        '4lw.commands.whitelist=ruok,srvr,stat,mntr,conf',
        'maxClientCnxns=0',
        'preAllocSize=1024',
        '',
      ].join('\n'),
    );
    const server = await startProcess({
      command: 'java',
      args: [
        '-Xmx256m',
        '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
        `-Dzookeeper.DigestAuthenticationProvider.superDigest=${superDigest}`,
        '-cp',
        classpath,
        'org.apache.zookeeper.server.ZooKeeperServerMain',
        config,
      ],
      logFile: join(dir, 'zookeeper.log'),
      cwd: dir,
      ready: async () => (await fourLetterWord('127.0.0.1', port, 'ruok')) === 'imok',
      timeoutMs: 60_000,
    });
    return {
      connectString: `127.0.0.1:${port}`,
      host: '127.0.0.1',
      port,
      superAuth: { scheme: 'digest', credentials: superCredentials },
      dir,
      stop: async () => {
        await server.stop(10_000);
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
}
