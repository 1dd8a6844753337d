// Services: the DR cluster allocates its own cluster IPs. A headless Service ("None") is a
// choice, not an allocation, and is kept (the original dropped it). NodePorts are kept because
// clients outside the cluster depend on them.
import type { KubeObject } from '../types.ts';
import { isRecord } from '../types.ts';

export function prepareService(obj: KubeObject): KubeObject {
  if (obj.apiVersion !== 'v1' || obj.kind !== 'Service' || !isRecord(obj.spec)) return obj;
  const spec = { ...obj.spec };
  if (spec.clusterIP === 'None') {
    spec.clusterIPs = ['None'];
  } else {
    delete spec.clusterIP;
    delete spec.clusterIPs;
  }
  delete spec.ipFamilies; // follows the allocated IPs
  delete spec.healthCheckNodePort;
  delete spec.loadBalancerIP;
  return { ...obj, spec };
}
