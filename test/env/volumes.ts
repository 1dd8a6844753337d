// Where a test cluster's PVC keeps its data on this host: its local PV's directory on one of the
// test nodes (TestNode.pvs), once the PVC is bound.
import type { TestCluster } from './cluster.ts';
import { kubectl } from './cluster.ts';
import { eventually } from './wait.ts';

export async function volumeDir(c: TestCluster, ns: string, pvc: string): Promise<string> {
  const volume = await eventually(`PVC ${ns}/${pvc} bound`, async () => {
    const o = JSON.parse((await kubectl(c.kubeconfigPath, ['-n', ns, 'get', 'pvc', pvc, '-o', 'json'])).stdout) as { spec: { volumeName?: string } };
    return o.spec.volumeName || undefined;
  }, 120_000);
  const dir = c.nodes.map((n) => n.pvs.get(volume)).find((d) => d !== undefined);
  if (!dir) throw new Error(`PV ${volume} is not one of the test nodes' local PVs`);
  return dir;
}
