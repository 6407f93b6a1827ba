export {
  type ContactPointSecrets,
  canonicalJson,
  type DatasourceSecrets,
  type FolderRecord,
  REDACTED,
} from './documents.ts';
export { backup, restore } from './embed.ts';
export { GrafanaApi, type GrafanaAuth } from './grafana-api.ts';
export {
  ALERTING_ENTRIES,
  CONFIG_FIELDS,
  DASHBOARDS_PREFIX,
  DATASOURCES_ENTRY,
  FOLDERS_ENTRY,
  fromConfig,
  GrafanaComponent,
  type GrafanaOptions,
  grafana,
  LIBRARY_PANELS_ENTRY,
} from './grafana-component.ts';
export {
  CONFIG_ENTRY,
  DATABASE_ENTRY,
  FILES_CONFIG_FIELDS,
  GrafanaFilesComponent,
  type GrafanaFilesOptions,
  grafanaFiles,
  PROVISIONING_PREFIX,
} from './grafana-files-component.ts';
