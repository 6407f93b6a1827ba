// Starts firebase-tools' Cloud Storage emulator without its Java rules runtime, which only
// Firebase-SDK requests need: the GCS JSON API routes go through the admin layer, which allows
// everything. Uses firebase-tools internals (lib/emulator/...), so the version is pinned.
// Usage: TMPDIR=<dir> node gcs-emulator.cjs <port> [projectId]
const path = require('node:path');

const fbRoot = path.dirname(require.resolve('firebase-tools/package.json'));
const { StorageEmulator } = require(path.join(fbRoot, 'lib/emulator/storage'));
const { EmulatorRegistry } = require(path.join(fbRoot, 'lib/emulator/registry'));

const port = Number(process.argv[2] || 19199);
const projectId = process.argv[3] || 'demo-test';
const emulator = new StorageEmulator({ projectId, host: '127.0.0.1', port, auto_download: false });
emulator._rulesRuntime.start = async () => {};
emulator._rulesRuntime.stop = async () => {};
emulator._rulesManager.start = async () => [];
emulator._rulesManager.stop = async () => {};

// Calling emulator.start() directly crashes on the first request ("Cannot determine host and port").
EmulatorRegistry.start(emulator).then(
  () => console.log(`gcs emulator listening on http://127.0.0.1:${port}`),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
const stop = () => EmulatorRegistry.stop('storage').finally(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
