export { backup, restore } from './embed.ts';
export {
  fromConfig,
  HaproxyComponent,
  type HaproxyOptions,
  type HaproxyRestoreOptions,
  haproxy,
} from './haproxy-component.ts';
export {
  adminStateCommand,
  parseInfo,
  parseServersState,
  runtimeCommand,
  type ServerStateRow,
} from './runtime-api.ts';
