export { fromConfig, InfluxComponent, type InfluxOptions, influx } from './influx-component.ts';
export * from './json-dump/index.ts';
export * from './line-protocol/index.ts';
export * from './portable/index.ts';
export {
  type CountDifference,
  type CountedDatabase,
  type VerifyCountsOptions,
  type VerifyCountsResult,
  verifyCounts,
} from './verify-counts.ts';
