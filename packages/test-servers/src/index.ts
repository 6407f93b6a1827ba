export { type AzuriteServer, startAzurite } from './azurite.ts';
export {
  type ElasticsearchDouble,
  type ElasticsearchDoubleOptions,
  startElasticsearchDouble,
} from './elasticsearch-double.ts';
export { type EtcdServer, type StartEtcdOptions, startEtcd } from './etcd.ts';
export {
  type ChunkFault,
  type DoubleSession,
  type GcsDouble,
  type GcsDoubleOptions,
  startGcsDouble,
} from './gcs-double.ts';
export { startGcsEmulator } from './gcs-emulator.ts';
export { type GrafanaDouble, startGrafanaDouble } from './grafana-double.ts';
export * from './haproxy.ts';
export {
  type HttpProxy,
  type HttpProxyOptions,
  type ProxiedRequest,
  type SilentServer,
  startHttpProxy,
  startSilentServer,
} from './http-proxy.ts';
export { type InfluxdServer, startInfluxd } from './influxd.ts';
export { type KafkaDouble, type KafkaDoubleOptions, startKafkaDouble } from './kafka-double.ts';
export { type KibanaDouble, type KibanaDoubleOptions, startKibanaDouble } from './kibana-double.ts';
export { type KubernetesDouble, startKubernetesDouble } from './kubernetes-double.ts';
export { type PostgresServer, type StartPostgresOptions, startPostgres } from './postgres.ts';
export { freePort, listenOnFreePort, type ServerProcess, startProcess, waitFor } from './process.ts';
export * from './prometheus.ts';
export * from './rabbitmq.ts';
export { type S3rverServer, startS3rver } from './s3rver.ts';
export { type SshdServer, startSshd } from './sshd.ts';
export { type SwiftServer, startSwift } from './swift.ts';
export * from './zookeeper.ts';
