export { backup, restore } from './embed.ts';
export {
  FilesComponent,
  type FilesOptions,
  files,
  fromConfig,
  READ_CHUNK_SIZE,
  SECRET_FILES,
} from './files-component.ts';
