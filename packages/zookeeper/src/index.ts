export { backup, restore } from './embed.ts';
export { parseSrvr, readServerStatus, type ServerStatus } from './server-status.ts';
export { isZnodePath, parseRecord, ZNODES_ENTRY, type ZnodeRecord } from './znode-record.ts';
export type { Acl } from './zookeeper-client.ts';
export {
  fromConfig,
  sequenceCounter,
  type ZookeeperAuth,
  ZookeeperComponent,
  type ZookeeperOptions,
  zookeeper,
} from './zookeeper-component.ts';
