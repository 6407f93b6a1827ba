export { backup, restore } from './embed.ts';
export { KibanaApi, type KibanaAuth } from './kibana-api.ts';
export {
  CONFIG_FIELDS,
  type ConnectorSecrets,
  DEFAULT_TYPES,
  fromConfig,
  KibanaComponent,
  type KibanaOptions,
  kibana,
  OBJECTS_PREFIX,
  SPACES_ENTRY,
} from './kibana-component.ts';
