import { startS3rver } from '@bk/test-servers';
import { MIB } from './helpers.ts';
import { defineS3Suite } from './s3-suite.ts';

// s3rver: no signature checks, no abort/list of multipart uploads, If-None-Match ignored.
defineS3Suite({
  name: 's3rver',
  start: startS3rver,
  listsUploads: false,
  conditionalCreate: false,
  largeBytes: Number(process.env.BK_S3_LARGE_MIB ?? 256) * MIB,
});
