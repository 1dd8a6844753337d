// The CRD reference (docs/crd-reference.md), written by `npm run manifests` from the same
// structural schemas as the CRDs, so the document cannot drift from what the API server checks.
// Pure: schema in, Markdown out.
import type { JsonSchema } from './crds.ts';

interface Row {
  path: string;
  type: string;
  required: boolean;
  schema: JsonSchema;
}

interface CelEntry {
  rule: string;
  message: string;
  fieldPath?: string;
}

/** Text for a Markdown table cell: one line, pipes escaped (GFM reads `\|` even in code spans). */
function cell(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|');
}

/** A code span that survives backticks inside it. */
function code(text: string): string {
  const fence = text.includes('`') ? '``' : '`';
  const pad = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${text}${pad}${fence}`;
}

function typeOf(node: JsonSchema): string {
  if (node['x-kubernetes-int-or-string'] === true) return 'int or string';
  if (node.type === 'array') return `[]${typeOf((node.items ?? {}) as JsonSchema)}`;
  if (node.type === 'object' && typeof node.additionalProperties === 'object') return `map[string]${typeOf(node.additionalProperties as JsonSchema)}`;
  if (node.type === 'object' && node.properties === undefined && node['x-kubernetes-preserve-unknown-fields'] === true) return 'any JSON';
  return typeof node.format === 'string' ? `${String(node.type)} (${node.format})` : String(node.type ?? 'any');
}

/** The checks the API server runs on this field itself (not on its children). */
function constraints(node: JsonSchema): string[] {
  const out: string[] = [];
  if (Array.isArray(node.enum)) out.push(`one of ${node.enum.map((v) => code(String(v))).join(', ')}`);
  if (node.minimum !== undefined) out.push(`≥ ${String(node.minimum)}`);
  if (node.maximum !== undefined) out.push(`≤ ${String(node.maximum)}`);
  if (node.minLength !== undefined) out.push(`length ≥ ${String(node.minLength)}`);
  if (node.maxLength !== undefined) out.push(`length ≤ ${String(node.maxLength)}`);
  if (node.minItems !== undefined) out.push(`items ≥ ${String(node.minItems)}`);
  if (node.maxItems !== undefined) out.push(`items ≤ ${String(node.maxItems)}`);
  if (typeof node.pattern === 'string') out.push(`matches ${code(node.pattern)}`);
  if (node['x-kubernetes-list-type'] === 'map') out.push(`unique by ${((node['x-kubernetes-list-map-keys'] ?? []) as string[]).map(code).join(', ')}`);
  else if (node['x-kubernetes-list-type'] === 'set') out.push('unique items');
  const rules = (node['x-kubernetes-validations'] ?? []) as CelEntry[];
  if (rules.length > 0) out.push(`${rules.length} CEL rule${rules.length > 1 ? 's' : ''} (below)`);
  return out;
}

/** Every field under `node`, depth first, properties in name order (the CRD's own order). */
function rows(node: JsonSchema, path: string, out: Row[]): Row[] {
  const props = (node.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((node.required ?? []) as string[]);
  for (const [name, child] of Object.entries(props)) {
    const childPath = path ? `${path}.${name}` : name;
    out.push({ path: childPath, type: typeOf(child), required: required.has(name), schema: child });
    descend(child, childPath, out);
  }
  return out;
}

function descend(node: JsonSchema, path: string, out: Row[]): void {
  if (node.properties !== undefined) rows(node, path, out);
  else if (node.type === 'array' && node.items !== undefined) descend(node.items as JsonSchema, `${path}[]`, out);
  else if (typeof node.additionalProperties === 'object') descend(node.additionalProperties as JsonSchema, `${path}.<key>`, out);
}

/** The CEL rules of every node under `node`, with the path they are attached to. */
function celRules(node: JsonSchema, path: string, out: Array<CelEntry & { path: string }>): Array<CelEntry & { path: string }> {
  for (const r of (node['x-kubernetes-validations'] ?? []) as CelEntry[]) out.push({ ...r, path });
  for (const [name, child] of Object.entries((node.properties ?? {}) as Record<string, JsonSchema>)) celRules(child, path ? `${path}.${name}` : name, out);
  if (node.items !== undefined) celRules(node.items as JsonSchema, `${path}[]`, out);
  if (typeof node.additionalProperties === 'object') celRules(node.additionalProperties as JsonSchema, `${path}.<key>`, out);
  return out;
}

function fieldTable(root: JsonSchema, top: 'spec' | 'status'): string {
  const node = ((root.properties ?? {}) as Record<string, JsonSchema>)[top];
  if (!node) return '';
  const lines = ['| Field | Type | Required | Default | Validation | Description |', '|---|---|---|---|---|---|'];
  for (const r of rows(node, top, [])) {
    const def = r.schema.default === undefined ? '' : code(JSON.stringify(r.schema.default));
    lines.push(`| ${code(r.path)} | ${cell(r.type)} | ${r.required ? 'yes' : ''} | ${cell(def)} | ${cell(constraints(r.schema).join('; '))} | ${cell(String(r.schema.description ?? ''))} |`);
  }
  const rules = celRules(node, top, []);
  if (rules.length > 0) {
    lines.push('', `CEL rules on \`${top}\` (checked by the API server; the message is what \`kubectl\` prints):`, '', '| On | Rule | Message |', '|---|---|---|');
    for (const r of rules) lines.push(`| ${code(r.path + (r.fieldPath ?? ''))} | ${cell(code(r.rule))} | ${cell(r.message)} |`);
  }
  return lines.join('\n');
}

export interface ReferencedCrd {
  kind: string;
  crd: JsonSchema;
}

/** docs/crd-reference.md for the given CRDs. */
export function crdReference(crds: ReferencedCrd[], header: string): string {
  const parts = [
    header.trim(),
    '',
    '# CRD reference',
    '',
    'Every field of the dr-syncer.io/v1alpha1 custom resources, from the same schemas as the CRDs in',
    '[`crds/`](../crds) (`src/api/v1alpha1`). `kubectl explain replication.spec` shows the same',
    'descriptions in a cluster. Paths: `[]` is an item of a list, `<key>` any key of a map.',
    '',
  ];
  for (const { kind, crd } of crds) {
    const spec = crd.spec as { group: string; names: { plural: string; shortNames: string[] }; versions: Array<{ name: string; schema: { openAPIV3Schema: JsonSchema } }> };
    const version = spec.versions[0]!;
    const root = version.schema.openAPIV3Schema;
    parts.push(
      `## ${kind}`,
      '',
      `\`${spec.group}/${version.name}\`, namespaced; \`kubectl get ${spec.names.plural}\` (short: ${spec.names.shortNames.map(code).join(', ')}).`,
      '',
      `### ${kind} spec`,
      '',
      fieldTable(root, 'spec'),
      '',
      `### ${kind} status`,
      '',
      'Written by the controller; read-only for users.',
      '',
      fieldTable(root, 'status'),
      '',
    );
  }
  return parts.join('\n');
}
