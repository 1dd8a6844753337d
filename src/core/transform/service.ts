// Services: the DR cluster allocates its own cluster IPs. A headless Service ("None") is a
// choice, not an allocation, and is kept (the original dropped it).
//
// Node ports: a port the user chose is kept (clients outside the cluster depend on it); a port
// the API server assigned is dropped, so the DR cluster assigns its own. Pinned assigned ports
// collide as soon as two Replications (or two source clusters) put one app into one DR cluster.
// managedFields tell which is which: a chosen nodePort is owned by the manager that set it, an
// assigned one by nobody. Without managedFields (never the case on a current API server) we
// cannot tell, and keep the port as the source has it.
import type { KubeObject } from '../types.ts';
import { isRecord } from '../types.ts';

/** "port/protocol" of every Service port whose nodePort some field manager set. */
function chosenNodePorts(managedFields: unknown): Set<string> | undefined {
  if (!Array.isArray(managedFields) || !managedFields.some((e) => isRecord(e) && isRecord(e.fieldsV1))) return undefined;
  const out = new Set<string>();
  for (const entry of managedFields) {
    const ports = isRecord(entry) && isRecord(entry.fieldsV1) && isRecord(entry.fieldsV1['f:spec']) ? entry.fieldsV1['f:spec']['f:ports'] : undefined;
    if (!isRecord(ports)) continue;
    for (const [k, fields] of Object.entries(ports)) {
      if (!k.startsWith('k:') || !isRecord(fields) || !('f:nodePort' in fields)) continue;
      try {
        const key = JSON.parse(k.slice(2)) as { port?: number; protocol?: string };
        out.add(`${key.port}/${key.protocol ?? 'TCP'}`);
      } catch {
        /* not a list-map key we know */
      }
    }
  }
  return out;
}

/** `managedFields` of the source object (stripped from `obj` by then). */
export function prepareService(obj: KubeObject, managedFields?: unknown): KubeObject {
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
  const chosen = chosenNodePorts(managedFields);
  if (chosen && Array.isArray(spec.ports)) {
    spec.ports = spec.ports.map((p: unknown) => {
      if (!isRecord(p) || p.nodePort === undefined || chosen.has(`${String(p.port)}/${typeof p.protocol === 'string' ? p.protocol : 'TCP'}`)) return p;
      const { nodePort: _assigned, ...rest } = p;
      return rest;
    });
  }
  return { ...obj, spec };
}
