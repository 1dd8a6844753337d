// Namespace mapping: objects move to the destination namespace, and references that name the
// source namespace from inside it follow, so that RBAC and network policy still mean the same.
import type { KubeObject } from '../types.ts';
import { apiGroupOf, isRecord } from '../types.ts';

const NAME_LABEL = 'kubernetes.io/metadata.name';

export function mapNamespace(obj: KubeObject, from: string, to: string): KubeObject {
  const out: KubeObject = { ...obj, metadata: { ...obj.metadata, namespace: to } };
  if (from === to) return out;
  if (obj.kind === 'RoleBinding' && apiGroupOf(obj.apiVersion) === 'rbac.authorization.k8s.io' && Array.isArray(obj.subjects)) {
    out.subjects = obj.subjects.map((s: unknown) =>
      isRecord(s) && s.kind === 'ServiceAccount' && s.namespace === from ? { ...s, namespace: to } : s,
    );
  }
  if (obj.kind === 'NetworkPolicy' && apiGroupOf(obj.apiVersion) === 'networking.k8s.io' && isRecord(obj.spec)) {
    out.spec = mapPolicyPeers(obj.spec, from, to);
  }
  return out;
}

/** A peer's namespaceSelector on the standard name label pointing at the source namespace. */
function mapPolicyPeers(spec: Record<string, unknown>, from: string, to: string): Record<string, unknown> {
  const mapPeer = (p: unknown): unknown => {
    if (!isRecord(p) || !isRecord(p.namespaceSelector) || !isRecord(p.namespaceSelector.matchLabels)) return p;
    const ml = p.namespaceSelector.matchLabels;
    if (ml[NAME_LABEL] !== from) return p;
    return { ...p, namespaceSelector: { ...p.namespaceSelector, matchLabels: { ...ml, [NAME_LABEL]: to } } };
  };
  const mapRules = (rules: unknown, key: 'from' | 'to'): unknown =>
    Array.isArray(rules) ? rules.map((r: unknown) => (isRecord(r) && Array.isArray(r[key]) ? { ...r, [key]: (r[key] as unknown[]).map(mapPeer) } : r)) : rules;
  const out = { ...spec };
  if (spec.ingress !== undefined) out.ingress = mapRules(spec.ingress, 'from');
  if (spec.egress !== undefined) out.egress = mapRules(spec.egress, 'to');
  return out;
}
