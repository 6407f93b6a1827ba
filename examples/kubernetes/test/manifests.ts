import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

/** The example's folder. */
export const EXAMPLE = fileURLToPath(new URL('..', import.meta.url));

/** One Kubernetes object as written in a manifest, with the file it came from. */
export interface Manifest {
  file: string;
  apiVersion: string;
  kind: string;
  metadata: { name?: string; generateName?: string; namespace?: string };
  [field: string]: unknown;
}

/** Every object of every `manifests/*.yaml`, in file order; a YAML error fails loudly. */
export async function readManifests(): Promise<Manifest[]> {
  const folder = join(EXAMPLE, 'manifests');
  const files = (await readdir(folder)).filter((file) => file.endsWith('.yaml')).sort();
  const manifests: Manifest[] = [];
  for (const file of files) {
    for (const document of parseAllDocuments(await readFile(join(folder, file), 'utf8'))) {
      if (document.errors.length > 0) throw new Error(`${file}: ${document.errors[0]?.message}`);
      const value = document.toJS() as Omit<Manifest, 'file'> | null;
      if (value !== null) manifests.push({ ...value, file } as Manifest);
    }
  }
  return manifests;
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean } };
}

export interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
  securityContext?: Record<string, unknown>;
}

export interface PodSpec {
  containers: Container[];
  volumes?: Array<{
    name: string;
    configMap?: { name: string };
    emptyDir?: object;
    persistentVolumeClaim?: { claimName: string; readOnly?: boolean };
  }>;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; fsGroup?: number };
  restartPolicy?: string;
}

/** The pod a Job or a CronJob runs. */
export function podOf(manifest: Manifest): PodSpec {
  const spec = manifest.spec as {
    template?: { spec: PodSpec };
    jobTemplate?: { spec: { template: { spec: PodSpec } } };
  };
  const pod = spec.jobTemplate?.spec.template.spec ?? spec.template?.spec;
  if (!pod)
    throw new Error(`${manifest.file}: ${manifest.kind} ${manifest.metadata.name} has no pod template.`);
  return pod;
}

/** A manifest's name for messages: `CronJob bk-prune`. */
export function nameOf(manifest: Manifest): string {
  return `${manifest.kind} ${manifest.metadata.name ?? manifest.metadata.generateName}`;
}

/** The `bk.config.json` a ConfigMap holds. */
export interface BkConfig {
  target: string;
  components: Array<{ kind: string; name: string; root?: string; [field: string]: unknown }>;
}

/** Parses the `bk.config.json` of a ConfigMap manifest. */
export function configOf(manifest: Manifest): BkConfig {
  const data = (manifest as Manifest & { data?: Record<string, string> }).data?.['bk.config.json'];
  if (data === undefined) throw new Error(`${manifest.file}: ${nameOf(manifest)} has no bk.config.json.`);
  return JSON.parse(data) as BkConfig;
}
