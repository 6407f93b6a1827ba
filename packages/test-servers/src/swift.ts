import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, type ServerProcess, startProcess } from './process.ts';

/** A private OpenStack Swift all-in-one (TempAuth, SLO, s3api) started by {@link startSwift}. */
export interface SwiftServer {
  /** `http://127.0.0.1:PORT` of the proxy. */
  proxyUrl: string;
  /** TempAuth v1 endpoint: `${proxyUrl}/auth/v1.0`. */
  authUrl: string;
  user: 'test:tester';
  key: 'testing';
  /** The account's storage URL: `${proxyUrl}/v1/AUTH_test`. */
  storageUrl: string;
  /** The same account over the S3 API (path-style addressing). */
  s3: { endpoint: string; region: 'us-east-1'; accessKeyId: 'test:tester'; secretAccessKey: 'testing' };
  /**
   * A second user of the account, without `.admin`: it may do only what container ACLs grant
   * (`X-Container-Write: test:writer` alone lets it create objects but not read them), over
   * Swift and over the S3 API (access key `test:writer`).
   */
  limitedUser: { user: 'test:writer'; key: 'writing' };
  /** The temp dir holding configs, rings, data and logs (`log/<server>.log`). */
  dir: string;
  /** PIDs of memcached and the four Swift servers, for tests that check they are gone after `stop()`. */
  pids: readonly number[];
  /** Stops every server by PID (reverse start order) and removes `dir`. */
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 60_000;
const SERVERS = ['account', 'container', 'object', 'proxy'] as const;
type ServerName = (typeof SERVERS)[number];

// One python process builds all three rings in ~0.6 s; nine swift-ring-builder calls take ~6 s.
const BUILD_RINGS = `
import sys
from swift.common.ring import RingBuilder
d = sys.argv[1]
for name, port in zip(['account', 'container', 'object'], map(int, sys.argv[2:5])):
    b = RingBuilder(6, 1, 1)
    b.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': port,
               'device': 'd1', 'weight': 100, 'meta': ''})
    b.rebalance()
    b.get_ring().save(f'{d}/{name}.ring.gz')
`;

interface Ports {
  account: number;
  container: number;
  object: number;
  proxy: number;
  memcached: number;
}

async function distinctFreePorts(): Promise<Ports> {
  const taken = new Set<number>();
  const next = async (): Promise<number> => {
    for (;;) {
      const port = await freePort();
      if (!taken.has(port)) {
        taken.add(port);
        return port;
      }
    }
  };
  return {
    account: await next(),
    container: await next(),
    object: await next(),
    proxy: await next(),
    memcached: await next(),
  };
}

function serverConfig(dir: string, name: ServerName, ports: Ports): string {
  // user = root: forked workers drop to `user`, and the default `swift` cannot write the root-owned devices dir.
  const common = `[DEFAULT]
bind_ip = 127.0.0.1
user = root
swift_dir = ${dir}/etc
devices = ${dir}/srv
mount_check = false
log_address = /dev/null
log_level = INFO
bind_port = ${ports[name]}
`;
  if (name !== 'proxy') {
    return `${common}workers = 0
[pipeline:main]
pipeline = healthcheck ${name}-server
[app:${name}-server]
use = egg:swift#${name}
[filter:healthcheck]
use = egg:swift#healthcheck
`;
  }
  // s3api must sit just before tempauth and slo after s3api (s3api checks this at start-up).
  return `${common}workers = 1
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl s3api tempauth copy slo dlo versioned_writes symlink proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true
[filter:tempauth]
use = egg:swift#tempauth
user_admin_admin = admin .admin .reseller_admin
user_test_tester = testing .admin
user_test_writer = writing
storage_url_scheme = default
[filter:s3api]
use = egg:swift#s3api
location = us-east-1
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:${ports.memcached}
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:tempurl]
use = egg:swift#tempurl
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
[filter:symlink]
use = egg:swift#symlink
`;
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function healthy(port: number): Promise<boolean> {
  const response = await fetch(`http://127.0.0.1:${port}/healthcheck`, {
    signal: AbortSignal.timeout(1_000),
  });
  await response.body?.cancel();
  return response.ok;
}

/** A v1 token, then `HEAD` of the account: proves proxy, memcached and account server work together. */
async function accountReachable(proxyUrl: string): Promise<boolean> {
  const auth = await fetch(`${proxyUrl}/auth/v1.0`, {
    headers: { 'X-Auth-User': 'test:tester', 'X-Auth-Key': 'testing' },
    signal: AbortSignal.timeout(2_000),
  });
  await auth.body?.cancel();
  const token = auth.headers.get('x-auth-token');
  if (!auth.ok || !token) return false;
  const head = await fetch(`${proxyUrl}/v1/AUTH_test`, {
    method: 'HEAD',
    headers: { 'X-Auth-Token': token },
    signal: AbortSignal.timeout(2_000),
  });
  return head.ok;
}

async function stopAll(processes: ServerProcess[]): Promise<void> {
  for (const server of [...processes].reverse()) await server.stop();
}

async function startOnce(dir: string, timeoutMs: number): Promise<SwiftServer> {
  const ports = await distinctFreePorts();
  const etc = join(dir, 'etc');
  const logs = join(dir, 'log');
  await rm(join(dir, 'srv'), { recursive: true, force: true });
  await Promise.all([
    mkdir(etc, { recursive: true }),
    mkdir(join(dir, 'srv', 'd1'), { recursive: true }),
    mkdir(logs, { recursive: true }),
  ]);
  await promisify(execFile)('/usr/bin/python3', [
    '-c',
    BUILD_RINGS,
    etc,
    String(ports.account),
    String(ports.container),
    String(ports.object),
  ]);
  await Promise.all(
    SERVERS.map((name) => writeFile(join(etc, `${name}-server.conf`), serverConfig(dir, name, ports))),
  );

  const proxyUrl = `http://127.0.0.1:${ports.proxy}`;
  const deadline = Date.now() + timeoutMs;
  const started: ServerProcess[] = [];
  try {
    // memcached first: without it TempAuth answers 503.
    started.push(
      await startProcess({
        command: 'memcached',
        args: ['-l', '127.0.0.1', '-p', String(ports.memcached), '-U', '0', '-m', '64', '-u', 'root'],
        logFile: join(logs, 'memcached.log'),
        ready: () => tcpOpen(ports.memcached),
        timeoutMs: Math.max(1, deadline - Date.now()),
      }),
    );
    const servers = await Promise.allSettled(
      SERVERS.map((name) =>
        startProcess({
          command: `swift-${name}-server`,
          args: [join(etc, `${name}-server.conf`), '-v'],
          logFile: join(logs, `${name}.log`),
          ready: async () =>
            (await healthy(ports[name])) && (name !== 'proxy' || (await accountReachable(proxyUrl))),
          timeoutMs: Math.max(1, deadline - Date.now()),
        }),
      ),
    );
    for (const server of servers) if (server.status === 'fulfilled') started.push(server.value);
    const failed = servers.find((server) => server.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (error) {
    await stopAll(started);
    throw error;
  }

  return {
    proxyUrl,
    authUrl: `${proxyUrl}/auth/v1.0`,
    user: 'test:tester',
    key: 'testing',
    storageUrl: `${proxyUrl}/v1/AUTH_test`,
    s3: { endpoint: proxyUrl, region: 'us-east-1', accessKeyId: 'test:tester', secretAccessKey: 'testing' },
    limitedUser: { user: 'test:writer', key: 'writing' },
    dir,
    pids: started.map((server) => server.pid),
    stop: async () => {
      await stopAll(started);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Starts a private Swift all-in-one (memcached + account, container, object and proxy servers;
 * TempAuth user `test:tester` / `testing`; SLO, DLO and s3api enabled) on loopback ports below
 * 32768, in a fresh temp dir, and resolves once an authenticated request succeeds. Start-up takes
 * 4–11 s, so start one per test file. A server that exits early (another process took its port)
 * makes it start again once with new ports. When start-up fails the temp dir is kept for its logs.
 * Needs Debian's swift packages and memcached.
 *
 * @example
 * const swift = await startSwift();
 * try { ... } finally { await swift.stop(); }
 */
export async function startSwift(): Promise<SwiftServer> {
  const dir = await mkdtemp(join(tmpdir(), 'bk-swift-'));
  const deadline = Date.now() + START_TIMEOUT_MS;
  try {
    return await startOnce(dir, START_TIMEOUT_MS);
  } catch (error) {
    // Time left means a server exited early rather than being slow: most likely a port race.
    if (Date.now() > deadline - 5_000) throw error;
    return await startOnce(dir, Math.max(10_000, deadline - Date.now()));
  }
}
