import { type Component, ConfigError } from '@bk/core';
import { importPlugin } from './import-plugin.ts';
import type { ComponentConfig } from './load-config.ts';

/** Builds a component from its config fields (everything but `kind`). */
export type ComponentFactory = (config: Record<string, unknown>) => Component | Promise<Component>;

const KIND = /^[a-z0-9][a-z0-9-]*$/;

/**
 * Components by kind. `files` is built in (`@bk/files`); any other kind loads `@bk/<kind>` on
 * first use and calls its exported `fromConfig`. Services embedding the CLI register their own.
 *
 * @example
 * const components = createComponentRegistry().register('demo', (config) => demo(config));
 */
export class ComponentRegistry {
  readonly #factories = new Map<string, ComponentFactory>();

  /** Adds or replaces the factory for `kind`. */
  register(kind: string, factory: ComponentFactory): this {
    this.#factories.set(kind, factory);
    return this;
  }

  /**
   * Builds the component a config entry describes.
   *
   * @throws {ConfigError} when the kind is invalid, its package is not installed, or the package
   *   has no `fromConfig`; whatever the package's `fromConfig` throws for invalid fields.
   */
  async create(config: ComponentConfig): Promise<Component> {
    const { kind, ...fields } = config;
    const factory = this.#factories.get(kind) ?? (await this.#load(kind));
    return factory(fields);
  }

  async #load(kind: string): Promise<ComponentFactory> {
    if (!KIND.test(kind)) throw new ConfigError(`"${kind}" is not a component kind.`);
    const packageName = `@bk/${kind}`;
    const plugin = await importPlugin(packageName, `The component kind "${kind}"`);
    if (typeof plugin.fromConfig !== 'function')
      throw new ConfigError(
        `${packageName} does not export fromConfig(config); is it a bk component package?`,
      );
    const factory = plugin.fromConfig as ComponentFactory;
    this.#factories.set(kind, factory);
    return factory;
  }
}

/** A registry with `files` built in; every other kind is loaded from `@bk/<kind>` on demand. */
export function createComponentRegistry(): ComponentRegistry {
  return new ComponentRegistry().register('files', async (config) =>
    (await import('@bk/files')).fromConfig(config),
  );
}
