export { backup, restore } from './embed.ts';
export {
  CLUSTER_ENTRY,
  type ClusterRecord,
  type CommittedOffset,
  FORMAT_VERSION,
  fromConfig,
  GROUPS_ENTRY,
  type GroupRecord,
  incrementalFrom,
  KafkaComponent,
  type KafkaOptions,
  kafka,
  type PartitionCut,
  RECORDS_PREFIX,
  type TopicRecord,
} from './kafka-component.ts';
export { type OffsetRun, OffsetTranslation, translateThroughRuns } from './offset-translation.ts';
export {
  decodeRecord,
  encodeRecord,
  linesOf,
  type PartitionRecord,
  type StoredRecord,
  type TimestampType,
} from './record-chunks.ts';
