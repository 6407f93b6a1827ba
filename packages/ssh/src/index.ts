export { fromConfig, type SshCommand, SshComponent, type SshComponentOptions, ssh } from './ssh-component.ts';
export { knownHostsName, knownKeys, SshSession, type SshTarget } from './ssh-session.ts';
