export {
  type ClusterInfo,
  ElasticsearchApi,
  type ElasticsearchAuth,
} from './elasticsearch-api.ts';
export {
  CONFIG_FIELDS,
  DOCUMENTS_PREFIX,
  ElasticsearchComponent,
  type ElasticsearchOptions,
  elasticsearch,
  fromConfig,
  INDICES_ENTRY,
  type IndexRecord,
} from './elasticsearch-component.ts';
export { backup, restore } from './embed.ts';
