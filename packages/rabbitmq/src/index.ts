export {
  canonicalJson,
  conflictsOf,
  type Definitions,
  passwordHashesOf,
  redact,
  sortDefinitions,
  withoutExisting,
} from './definitions.ts';
export { backup, restore } from './embed.ts';
export { ManagementApi } from './management-api.ts';
export {
  DEFINITIONS_ENTRY,
  fromConfig,
  RabbitmqComponent,
  type RabbitmqOptions,
  rabbitmq,
  VHOST_PREFIX,
} from './rabbitmq-component.ts';
