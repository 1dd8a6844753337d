// Pruning: which files of a previous sync go when their objects were not rendered this time.
// A DR tool must never delete on a guess, so a file goes only when this sync knows its object is
// gone: its type is served by the source and was read (the object is absent), or is served but
// no longer selected. The file's own apiVersion and kind say what it is (our files start with
// them), so no file-name convention can make one type's files look like another's.
import { apiGroupOf } from './types.ts';

export interface ObjectType {
  group: string;
  kind: string;
}

export const typeKeyOf = (t: ObjectType): string => (t.group ? `${t.kind}.${t.group}` : t.kind);

/** The type of a rendered object file, from its first lines; undefined for anything else. */
export function fileObjectType(content: string): ObjectType | undefined {
  const m = /^apiVersion: "?([^"\n]+)"?\nkind: "?([^"\n]+)"?\n/.exec(content);
  return m ? { group: apiGroupOf(m[1]!), kind: m[2]! } : undefined;
}

export interface PruneContext {
  prune: boolean;
  /** Type keys (typeKeyOf) the source serves now. */
  served: ReadonlySet<string>;
  /** Type keys whose LIST failed in this sync. */
  failed: ReadonlySet<string>;
}

/**
 * What to do with a previous file that this sync did not render. `failedObject`: the object is
 * there but could not be written (its last good file stays).
 */
export function previousFileFate(type: ObjectType | undefined, failedObject: boolean, ctx: PruneContext): 'keep' | 'keep-unserved' | 'prune' {
  if (!ctx.prune || failedObject) return 'keep';
  if (!type) return 'prune'; // not an object file: nothing a GitOps tool applies
  const key = typeKeyOf(type);
  if (!ctx.served.has(key)) return 'keep-unserved';
  return ctx.failed.has(key) ? 'keep' : 'prune';
}
