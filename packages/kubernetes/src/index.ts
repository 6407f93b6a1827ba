export { backup, restore } from './embed.ts';
export {
  DEFAULT_KUBEADM_PATHS,
  fromConfig,
  KubernetesControlPlane,
  type KubernetesControlPlaneOptions,
  type KubernetesRestoreOptions,
  kubernetesControlPlane,
} from './kubernetes-control-plane.ts';
