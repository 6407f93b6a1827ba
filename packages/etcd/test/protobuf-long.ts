import { createRequire } from 'node:module';

/**
 * Imported first by the etcd tests, before `etcd3` loads protobufjs. protobufjs decodes int64
 * fields (lease IDs, revisions) through long.js when `require('long')` gives it the class; under
 * vitest the `import` resolve condition makes that `require` return long's ES module namespace,
 * protobufjs then falls back to JS numbers, and 64-bit lease IDs lose their low digits (plain
 * Node, as the `bk` command runs, is not affected). Handing protobufjs the class through
 * `dcodeIO.Long`, which it checks first, keeps the tests on exact IDs.
 */
const fromEtcd3 = createRequire(createRequire(import.meta.url).resolve('etcd3'));
const fromLoader = createRequire(fromEtcd3.resolve('@grpc/proto-loader'));
const fromProtobufjs = createRequire(fromLoader.resolve('protobufjs'));
const long = fromProtobufjs('long') as { default?: unknown; isLong?: unknown };
const Long = typeof long.isLong === 'function' ? long : long.default;
const global = globalThis as { dcodeIO?: { Long?: unknown } };
global.dcodeIO = { ...global.dcodeIO, Long };
