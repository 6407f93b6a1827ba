export { backup, restore } from './embed.ts';
export {
  EtcdComponent,
  type EtcdOptions,
  type EtcdRestoreOptions,
  type ExportedKey,
  etcd,
  fromConfig,
  type ImportKeysOptions,
  importKeys,
  prefixEnd,
} from './etcd-component.ts';
export {
  assertNoRunningMember,
  EtcdMemberRunningError,
  findRunningMember,
  type RunningMember,
} from './running-member.ts';
export { SNAPSHOT_HASH_LENGTH, verifySnapshot } from './snapshot.ts';
