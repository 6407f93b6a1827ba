export {
  type DayDump,
  type DumpMeasurementDaysOptions,
  dayDumpName,
  dumpMeasurementDays,
  nanosToRfc3339,
  parseDayDumpName,
} from './dump-measurement-days.ts';
export { type DumpRecord, parseDayDump, readDayDump } from './read-day-dump.ts';
