export { backup, restore } from './embed.ts';
export {
  DATABASE_PREFIX,
  defaultPgBin,
  fromConfig,
  GLOBALS_ENTRY,
  majorVersion,
  PostgresComponent,
  type PostgresOptions,
  postgres,
} from './postgres-component.ts';
