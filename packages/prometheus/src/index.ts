export {
  ALERTMANAGER_CONFIG_FIELDS,
  AlertmanagerComponent,
  type AlertmanagerOptions,
  alertmanager,
  SILENCES_ENTRY,
} from './alertmanager-component.ts';
export { CONFIG_PREFIX } from './config-files.ts';
export { backup, restore } from './embed.ts';
export { fromConfig, type PrometheusService } from './from-config.ts';
export {
  PROMETHEUS_CONFIG_FIELDS,
  PrometheusComponent,
  type PrometheusOptions,
  type PrometheusRestoreOptions,
  prometheus,
  TSDB_PREFIX,
} from './prometheus-component.ts';
export {
  isExpired,
  isSameSilence,
  type PostableSilence,
  parseSilences,
  planSilences,
  type Silence,
  type SilenceMatcher,
  type SilencePlan,
  toPostable,
} from './silences.ts';
