import { ConfigError, checkComponentConfig, isRecord } from '@bk/core';
import {
  ALERTMANAGER_CONFIG_FIELDS,
  AlertmanagerComponent,
  type AlertmanagerOptions,
} from './alertmanager-component.ts';
import {
  PROMETHEUS_CONFIG_FIELDS,
  PrometheusComponent,
  type PrometheusOptions,
} from './prometheus-component.ts';

/** Which server a config entry backs up: the `service` field, default `prometheus`. */
export type PrometheusService = 'prometheus' | 'alertmanager';

/**
 * Builds a component from the CLI's JSON config. The `bk` CLI loads `@bk/<kind>`, so both
 * servers are configured with `"kind": "prometheus"`; `"service": "alertmanager"` selects
 * Alertmanager (`"service": "prometheus"` is the default). Called directly, `"kind":
 * "alertmanager"` selects it too.
 *
 * @example
 * fromConfig({ kind: 'prometheus', url: 'http://127.0.0.1:9090', restore: { dataDir: '/srv/prom' } });
 * fromConfig({ kind: 'prometheus', service: 'alertmanager', url: 'http://127.0.0.1:9093' });
 * @throws {ConfigError} naming an unknown or invalid field.
 */
export function fromConfig(config: Record<string, unknown>): PrometheusComponent | AlertmanagerComponent {
  if (!isRecord(config)) throw new ConfigError('prometheus component config: must be a JSON object.');
  const { kind, service } = config;
  if (kind !== undefined && kind !== 'prometheus' && kind !== 'alertmanager') {
    throw new ConfigError(
      `prometheus component config: "kind" must be "prometheus" (or "alertmanager"), got ${JSON.stringify(kind)}.`,
    );
  }
  if (service !== undefined && service !== 'prometheus' && service !== 'alertmanager') {
    throw new ConfigError(
      `prometheus component config: "service" must be "prometheus" or "alertmanager", got ${JSON.stringify(service)}.`,
    );
  }
  if (kind === 'alertmanager' && service === 'prometheus') {
    throw new ConfigError(
      'prometheus component config: "kind" "alertmanager" contradicts "service" "prometheus".',
    );
  }
  const chosen: PrometheusService = (service ?? kind ?? 'prometheus') as PrometheusService;
  const { kind: _kind, service: _service, ...options } = config;
  if (chosen === 'alertmanager') {
    checkComponentConfig(options, 'alertmanager', ALERTMANAGER_CONFIG_FIELDS);
    return new AlertmanagerComponent(options as unknown as AlertmanagerOptions);
  }
  checkComponentConfig(options, 'prometheus', PROMETHEUS_CONFIG_FIELDS);
  return new PrometheusComponent(options as unknown as PrometheusOptions);
}
