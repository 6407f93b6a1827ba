export { errorName, errorStatus, toStorageError } from './s3-error.ts';
export {
  type ConditionalCreateMode,
  MAX_PART_BYTES,
  MAX_PARTS,
  MIN_PART_BYTES,
  PARTS_PER_SIZE_STEP,
  partSize,
  S3Storage,
  type S3StorageOptions,
} from './s3-storage.ts';
export { storageFromUrl } from './storage-from-url.ts';
