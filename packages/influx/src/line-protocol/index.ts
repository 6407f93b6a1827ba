export { escapeKey, escapeMeasurement, quoteIdentifier, quoteLiteral, quoteStringField } from './escape.ts';
export {
  type ExportLineProtocolOptions,
  exportLineProtocol,
  listMeasurements,
  listRetentionPolicies,
  type TimeBound,
} from './export-line-protocol.ts';
export {
  type ImportLineProtocolOptions,
  type ImportLineProtocolResult,
  importLineProtocol,
  type LineProtocolPrecision,
} from './import-line-protocol.ts';
export { InfluxQueryError } from './influx-query-error.ts';
export {
  type InfluxConnection,
  type InfluxSeries,
  type InfluxValue,
  JsonNumber,
  type QueryInfluxOptions,
  queryInflux,
} from './query-influx.ts';
export { splitLines } from './split-lines.ts';
