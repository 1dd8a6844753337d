// Shared schema pieces for the dr-syncer.io/v1alpha1 API. Every type here is a TypeBox schema:
// `Static<typeof X>` is the TypeScript type and the schema itself (after crds.ts strips TypeBox's
// symbol keys) is the CRD's OpenAPI v3 schema, so the two cannot drift apart.
//
// Kubernetes accepts only "structural" schemas: no anyOf/oneOf unions with types, no `const`,
// no patternProperties, no boolean additionalProperties. The helpers below build those shapes
// directly and register a TypeBox kind for each, so Value.Check validates them the way the API
// server does.
import { Kind, Type, TypeRegistry, FormatRegistry } from '@sinclair/typebox';
import type { TSchema, TUnsafe, Static, StringOptions, SchemaOptions } from '@sinclair/typebox';

export const GROUP = 'dr-syncer.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = 'dr-syncer.io/v1alpha1';

/** TS implementations of a schema node's CEL rules. A symbol key, so JSON.stringify drops it. */
export const CEL_CHECKS = Symbol.for('dr-syncer.io/cel-checks');
/** A human hint for pattern errors ("a DNS-1123 label: ..."), used by the TS validator only. */
export const PATTERN_HINT = Symbol.for('dr-syncer.io/pattern-hint');

export type CelReason = 'FieldValueInvalid' | 'FieldValueRequired' | 'FieldValueForbidden' | 'FieldValueDuplicate';

/**
 * One `x-kubernetes-validations` entry plus its TypeScript twin. `check` receives the node's
 * value after defaulting (like CEL's `self`) and returns true when the rule holds.
 */
export interface CelRule<T> {
  rule: string;
  message: string;
  /** Relative path (".schedule") the API server reports the error on. */
  fieldPath?: string;
  reason?: CelReason;
  check: (self: T) => boolean;
  /**
   * Why the API server cannot run this rule; it is then checked only by the TS validator (the
   * controller and `dr-syncer sync` use it). Example: CEL cannot see untyped (any JSON) fields.
   */
  tsOnly?: string;
}

/** Attaches CEL rules (for the API server) and their TS checks (for `dr-syncer sync -f`). */
export function withRules<S extends TSchema>(schema: S, rules: Array<CelRule<Static<S>>>): S {
  const node = schema as unknown as Record<string | symbol, unknown>;
  const serverRules = rules.filter((r) => r.tsOnly === undefined);
  if (serverRules.length > 0) node['x-kubernetes-validations'] = serverRules.map(({ rule, message, fieldPath, reason }) => ({
    rule,
    message,
    ...(fieldPath !== undefined ? { fieldPath } : {}),
    ...(reason !== undefined ? { reason } : {}),
  }));
  node[CEL_CHECKS] = rules;
  return schema;
}

// ---------------------------------------------------------------------------------------------
// Custom kinds: structural-schema shapes that TypeBox has no native type for.

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

TypeRegistry.Set('DrStringEnum', (schema: { enum: string[] }, value) => typeof value === 'string' && schema.enum.includes(value));
TypeRegistry.Set('DrIntOrString', (_schema, value) => typeof value === 'string' || Number.isInteger(value));
TypeRegistry.Set('DrStringMap', (_schema, value) => isRecord(value) && Object.values(value).every((v) => typeof v === 'string'));
TypeRegistry.Set('DrQuantityMap', (_schema, value) =>
  isRecord(value) && Object.values(value).every((v) => Number.isInteger(v) || (typeof v === 'string' && QUANTITY_RE.test(v))),
);
TypeRegistry.Set('DrAny', () => true);

// RFC 3339 as Kubernetes writes metav1.Time ("2024-01-02T03:04:05Z").
const DATE_TIME_RE = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
FormatRegistry.Set('date-time', (v) => DATE_TIME_RE.test(v) && !Number.isNaN(Date.parse(v)));

/** A string restricted to `values`; emitted as `{type: string, enum: [...]}` (no anyOf). */
export function StringEnum<const T extends string>(values: readonly T[], options: SchemaOptions = {}): TUnsafe<T> {
  return Type.Unsafe<T>({ ...options, [Kind]: 'DrStringEnum', type: 'string', enum: [...values] });
}

/** A Kubernetes quantity or port-like value: an integer or a string. */
export function IntOrString(options: SchemaOptions = {}): TUnsafe<number | string> {
  return Type.Unsafe<number | string>({ ...options, [Kind]: 'DrIntOrString', 'x-kubernetes-int-or-string': true });
}

/** A free-form `map[string]string` (labels, nodeSelector). */
export function StringMap(options: SchemaOptions = {}): TUnsafe<Record<string, string>> {
  return Type.Unsafe<Record<string, string>>({
    ...options,
    [Kind]: 'DrStringMap',
    type: 'object',
    additionalProperties: { type: 'string' },
  });
}

export const QUANTITY_PATTERN =
  '^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$';
const QUANTITY_RE = new RegExp(QUANTITY_PATTERN);

/** `map[string]resource.Quantity` (resources.limits / requests). */
export function QuantityMap(options: SchemaOptions = {}): TUnsafe<Record<string, number | string>> {
  return Type.Unsafe<Record<string, number | string>>({
    ...options,
    [Kind]: 'DrQuantityMap',
    type: 'object',
    additionalProperties: { 'x-kubernetes-int-or-string': true, pattern: QUANTITY_PATTERN },
  });
}

/** Any JSON value, kept as is by the API server (JSON-patch values). */
export function AnyValue(options: SchemaOptions = {}): TUnsafe<unknown> {
  return Type.Unsafe<unknown>({ ...options, [Kind]: 'DrAny', 'x-kubernetes-preserve-unknown-fields': true, nullable: true });
}

/** A string with a pattern and a hint that explains the pattern in words. */
export function PatternString(pattern: string, hint: string, options: StringOptions = {}) {
  const s = Type.String({ ...options, pattern });
  (s as unknown as Record<symbol, unknown>)[PATTERN_HINT] = hint;
  return s;
}

/**
 * A string checked with a CEL `matches()` rule instead of `pattern`, so the API server answers
 * with `message` ("must be a duration such as ...") rather than the bare regular expression.
 * For free-form syntax (cron, durations) where the regex does not explain itself.
 */
export function MatchString(pattern: string, message: string, options: StringOptions = {}) {
  if (pattern.includes("'")) throw new Error(`pattern ${pattern} cannot be a CEL raw string`);
  const re = new RegExp(pattern);
  return withRules(Type.String(options), [{ rule: `self.matches(r'${pattern}')`, message, check: (self) => re.test(self) }]);
}

// ---------------------------------------------------------------------------------------------
// Common string shapes.

export const DNS_LABEL_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
export const DNS_SUBDOMAIN_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
export const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$';
export const SECRET_KEY_PATTERN = '^[-._a-zA-Z0-9]+$';

/** A namespace name (DNS-1123 label). */
export function NamespaceName(description: string) {
  return PatternString(
    DNS_LABEL_PATTERN,
    'must be a namespace name (DNS-1123 label): lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters',
    { description, maxLength: 63 },
  );
}

/** The name of an object (DNS-1123 subdomain): RemoteCluster, Secret, ... */
export function ObjectName(description: string) {
  return PatternString(
    DNS_SUBDOMAIN_PATTERN,
    'must be an object name (DNS-1123 subdomain): lowercase letters, digits, "-" and ".", at most 253 characters',
    { description, maxLength: 253 },
  );
}

/** A Go-style duration ("30s", "1h30m", "1.5h"). */
export function Duration(description: string, def?: string) {
  return MatchString(DURATION_PATTERN, 'must be a duration such as "30s", "5m" or "1h30m" (units ms, s, m, h; no spaces)', {
    description,
    maxLength: 64,
    ...(def !== undefined ? { default: def } : {}),
  });
}

/** metav1.Time: an RFC 3339 timestamp. */
export function Timestamp(description: string) {
  return Type.String({ description, format: 'date-time' });
}

// ---------------------------------------------------------------------------------------------
// Shared objects.

export const ConditionStatus = StringEnum(['True', 'False', 'Unknown'], {
  description: 'Status of the condition: True, False or Unknown.',
});

/** The metav1.Condition shape. */
export const Condition = Type.Object(
  {
    type: PatternString(
      '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$',
      'must be a CamelCase condition type such as Ready',
      { description: 'Type of condition in CamelCase, for example Ready or Synced.', maxLength: 316 },
    ),
    status: ConditionStatus,
    observedGeneration: Type.Optional(
      Type.Integer({
        description:
          'The .metadata.generation the condition was set for. If it is lower than .metadata.generation, the condition is out of date.',
        format: 'int64',
        minimum: 0,
      }),
    ),
    lastTransitionTime: Timestamp('Last time the condition changed from one status to another.'),
    reason: PatternString(
      '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$',
      'must be a CamelCase reason such as SyncSucceeded',
      { description: 'Machine-readable CamelCase reason for the last transition.', minLength: 1, maxLength: 1024 },
    ),
    message: Type.String({ description: 'Human-readable message with details about the transition.', maxLength: 32768 }),
  },
  { description: 'A condition of the object (same shape as metav1.Condition).' },
);
export type Condition = Static<typeof Condition>;

/** `conditions` list keyed by type, as the Kubernetes API conventions ask. */
export function Conditions(description: string) {
  return Type.Array(Condition, {
    description,
    maxItems: 32,
    'x-kubernetes-list-type': 'map',
    'x-kubernetes-list-map-keys': ['type'],
  });
}

export const SecretKeyRef = Type.Object(
  {
    name: ObjectName('Name of the Secret, in the same namespace as the object that refers to it.'),
    key: PatternString(SECRET_KEY_PATTERN, 'must be a Secret data key: letters, digits, "-", "_" and "."', {
      description: 'Key inside the Secret.',
      maxLength: 253,
    }),
  },
  { description: 'A key in a Secret in the same namespace.' },
);
export type SecretKeyRef = Static<typeof SecretKeyRef>;

export const LocalSecretRef = Type.Object(
  { name: ObjectName('Name of the Secret, in the same namespace as the object that refers to it.') },
  { description: 'A Secret in the same namespace.' },
);
export type LocalSecretRef = Static<typeof LocalSecretRef>;

const GIT_CREDENTIALS_DESCRIPTION =
  'Secret in the same namespace with the HTTPS credentials for the repository: keys "username" and "password" ' +
  '(an access token works as the password). Omit for public repositories and local paths.';

const GIT_PATH_RULE: CelRule<string> = {
  rule: "!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')",
  message: 'path must be relative to the repository root and must not contain ".." segments',
  check: (self) => !self.startsWith('/') && !/(^|\/)\.\.(\/|$)/.test(self),
};

/** A directory inside a Git repository. */
export function GitPath(description: string) {
  return withRules(Type.String({ description, maxLength: 1024 }), [GIT_PATH_RULE]);
}

export function GitUrl(description: string) {
  return Type.String({ description, minLength: 1, maxLength: 2048 });
}

/** A Git repository (RemoteCluster.spec.git). */
export const GitRepoSpec = Type.Object(
  {
    url: GitUrl(
      'URL of the repository (https://... or http://...), or a local path to a repository (used by the CLI and in tests).',
    ),
    branch: Type.Optional(
      Type.String({ description: 'Branch to commit to. Created if it does not exist.', default: 'main', minLength: 1, maxLength: 255 }),
    ),
    path: Type.Optional(
      GitPath('Directory inside the repository that holds this cluster\'s manifests. Default: the repository root.'),
    ),
    credentialsSecretRef: Type.Optional(Type.Object(LocalSecretRef.properties, { description: GIT_CREDENTIALS_DESCRIPTION })),
  },
  { description: 'A Git repository that receives the replicated manifests (the GitOps DR repository).' },
);
export type GitRepoSpec = Static<typeof GitRepoSpec>;
export { GIT_CREDENTIALS_DESCRIPTION };

const LabelSelectorRequirement = withRules(
  Type.Object(
    {
      key: Type.String({ description: 'The label key the selector applies to.', minLength: 1, maxLength: 317 }),
      operator: StringEnum(['In', 'NotIn', 'Exists', 'DoesNotExist'], {
        description: 'How the key relates to the values: In, NotIn, Exists or DoesNotExist.',
      }),
      values: Type.Optional(
        Type.Array(Type.String({ description: 'A label value.', maxLength: 63 }), {
          description: 'Label values. Must be non-empty for In and NotIn, and empty for Exists and DoesNotExist.',
          maxItems: 64,
          'x-kubernetes-list-type': 'atomic',
        }),
      ),
    },
    { description: 'A label selector requirement: a key, an operator and values.' },
  ),
  [
    {
      rule: "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
      message: 'values must be non-empty when operator is In or NotIn, and empty when operator is Exists or DoesNotExist',
      fieldPath: '.values',
      check: (self) =>
        self.operator === 'In' || self.operator === 'NotIn' ? (self.values?.length ?? 0) > 0 : (self.values?.length ?? 0) === 0,
    },
  ],
);

/** metav1.LabelSelector. An empty selector matches everything. */
export function LabelSelector(description: string) {
  return Type.Object(
    {
      matchLabels: Type.Optional(
        StringMap({ description: 'Labels that must all be present with exactly these values (ANDed with matchExpressions).' }),
      ),
      matchExpressions: Type.Optional(
        Type.Array(LabelSelectorRequirement, {
          description: 'Label selector requirements, all of which must match (ANDed with matchLabels).',
          maxItems: 32,
          'x-kubernetes-list-type': 'atomic',
        }),
      ),
    },
    { description },
  );
}
export type LabelSelector = Static<ReturnType<typeof LabelSelector>>;

/** The metadata fields the TS side reads; the CRD publishes `metadata` as a plain object. */
export const ObjectMeta = Type.Object(
  {
    name: ObjectName('Name of the object, unique in its namespace.'),
    namespace: Type.Optional(NamespaceName('Namespace of the object.')),
    labels: Type.Optional(StringMap({ description: 'Labels of the object.' })),
    annotations: Type.Optional(StringMap({ description: 'Annotations of the object.' })),
    uid: Type.Optional(Type.String({ description: 'Unique ID set by the API server.' })),
    resourceVersion: Type.Optional(Type.String({ description: 'Version of the object, set by the API server.' })),
    generation: Type.Optional(Type.Integer({ description: 'Generation of the desired state (spec), set by the API server.' })),
    creationTimestamp: Type.Optional(Type.String({ description: 'When the object was created.' })),
    deletionTimestamp: Type.Optional(Type.String({ description: 'When deletion was requested; finalizers still run.' })),
    finalizers: Type.Optional(Type.Array(Type.String({ description: 'A finalizer.' }), { description: 'Finalizers that must finish before the object is deleted.' })),
  },
  {
    description: 'Standard object metadata.',
    // Everything else in ObjectMeta (managedFields, ownerReferences, ...) is accepted as is.
    'x-kubernetes-preserve-unknown-fields': true,
  },
);
export type ObjectMeta = Static<typeof ObjectMeta>;
