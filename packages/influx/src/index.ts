export * from './archiver/index.ts';
export { backup, restore } from './embed.ts';
export { type InfluxWindow, incrementalSince, influxWindow, isIncremental } from './incremental.ts';
export { fromConfig, InfluxComponent, type InfluxOptions, influx } from './influx-component.ts';
export * from './json-dump/index.ts';
export * from './line-protocol/index.ts';
export * from './portable/index.ts';
export {
  databaseExists,
  type RestoreIntoExistingOptions,
  type RestoreIntoExistingReport,
  restoreIntoExisting,
} from './restore-into-existing.ts';
export {
  type CountDifference,
  type CountedDatabase,
  type VerifyCountsOptions,
  type VerifyCountsResult,
  verifyCounts,
} from './verify-counts.ts';
