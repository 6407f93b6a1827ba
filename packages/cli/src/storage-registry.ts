import { ConfigError, type Storage } from '@bk/core';
import { importPlugin } from './import-plugin.ts';
import { redactUrl } from './redact-url.ts';

/** Opens a storage for a target URL. */
export type StorageFactory = (url: URL) => Storage | Promise<Storage>;

/**
 * Storage backends by URL scheme. `bk` ships with `file:` and knows the packages for `s3:`,
 * `az:`, `gs:` and `swift:`, which are loaded only when a target uses them. Services embedding
 * the CLI register their own schemes.
 *
 * @example
 * const storages = createStorageRegistry().register('mem', () => new MemoryStorage());
 * await main(['ls', '--target', 'mem://'], { storages });
 */
export class StorageRegistry {
  readonly #factories = new Map<string, StorageFactory>();

  /** Adds or replaces the factory for `scheme` (without the colon, e.g. `"s3"`). */
  register(scheme: string, factory: StorageFactory): this {
    this.#factories.set(scheme.replace(/:$/, '').toLowerCase(), factory);
    return this;
  }

  /** The schemes that have a factory. */
  schemes(): string[] {
    return [...this.#factories.keys()];
  }

  /**
   * Opens the storage for `url`.
   *
   * @throws {ConfigError} for a scheme no factory handles, or when its package is not installed.
   */
  async open(url: URL): Promise<Storage> {
    const scheme = url.protocol.replace(/:$/, '');
    const factory = this.#factories.get(scheme);
    if (!factory) {
      throw new ConfigError(
        `The target ${redactUrl(url)} uses "${scheme}:", which bk cannot store to; use one of ${this.schemes()
          .map((known) => `${known}:`)
          .join(', ')}.`,
      );
    }
    return factory(url);
  }
}

/** A factory that loads `packageName` on first use and calls its `storageFromUrl(url)`. */
function pluginStorage(packageName: string): StorageFactory {
  return async (url) => {
    const plugin = await importPlugin(packageName, `The target ${redactUrl(url)}`);
    if (typeof plugin.storageFromUrl !== 'function')
      throw new ConfigError(
        `${packageName} does not export storageFromUrl(url); is it a bk storage package?`,
      );
    return (plugin.storageFromUrl as (url: URL) => Storage | Promise<Storage>)(url);
  };
}

/**
 * A registry with the schemes `bk` knows: `file:` (`@bk/storage-fs`), and `s3:`, `az:`, `gs:`,
 * `swift:` through `@bk/storage-s3`, `@bk/storage-azure`, `@bk/storage-gcs`, `@bk/storage-swift`
 * when those are installed.
 */
export function createStorageRegistry(): StorageRegistry {
  return new StorageRegistry()
    .register('file', async (url) => (await import('@bk/storage-fs')).fsStorageFromUrl(url))
    .register('s3', pluginStorage('@bk/storage-s3'))
    .register('az', pluginStorage('@bk/storage-azure'))
    .register('gs', pluginStorage('@bk/storage-gcs'))
    .register('swift', pluginStorage('@bk/storage-swift'));
}
