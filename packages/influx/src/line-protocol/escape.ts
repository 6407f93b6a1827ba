/**
 * Escaping for InfluxDB 1.x line protocol
 * (https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/).
 */

/** A measurement name: commas and spaces are escaped. */
export function escapeMeasurement(name: string): string {
  return name.replace(/[, ]/g, (char) => `\\${char}`);
}

/** A tag key, tag value or field key: commas, equals signs and spaces are escaped. */
export function escapeKey(key: string): string {
  return key.replace(/[,= ]/g, (char) => `\\${char}`);
}

/** A string field value, with its surrounding double quotes: `"` and `\` are escaped. */
export function quoteStringField(value: string): string {
  return `"${value.replace(/["\\]/g, (char) => `\\${char}`)}"`;
}

/** An InfluxQL identifier in double quotes (`"my ""odd"" name"` style escaping with backslashes). */
export function quoteIdentifier(name: string): string {
  return `"${name.replace(/["\\]/g, (char) => `\\${char}`)}"`;
}

/** An InfluxQL string literal in single quotes. */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/['\\]/g, (char) => `\\${char}`)}'`;
}
