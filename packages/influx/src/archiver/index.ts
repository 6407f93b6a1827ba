export {
  type ArchiverClock,
  type ArchiverEvent,
  DrArchiver,
  type DrArchiverOptions,
  type DrArchiverStats,
  type DrSpoolOptions,
  type RotationReason,
} from './dr-archiver.ts';
export {
  listArchivedFiles,
  type ReplayDifference,
  type ReplayedFile,
  type ReplayOptions,
  type ReplayResult,
  replay,
} from './replay.ts';
