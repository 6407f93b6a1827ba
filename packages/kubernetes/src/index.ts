export { backup, restore } from './embed.ts';
export type { KubeConnection } from './kube-api.ts';
export {
  DEFAULT_KUBEADM_PATHS,
  fromConfig,
  KubernetesControlPlane,
  type KubernetesControlPlaneOptions,
  type KubernetesRestoreOptions,
  kubernetesControlPlane,
} from './kubernetes-control-plane.ts';
export {
  DEFAULT_EXCLUDED_RESOURCES,
  KubernetesResources,
  type KubernetesResourcesOptions,
  type KubernetesResourcesRestoreOptions,
  kubernetesResources,
  objectEntryPath,
  RESTORE_ORDER,
  resourcesFromConfig,
  stripServerFields,
} from './kubernetes-resources.ts';
