// The bounded ancestry walk (reachableCommits in src/adapters/git/objects.ts) on in-memory
// histories: linear, merges, a missing parent, the bound.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { reachableCommits } from '../../src/adapters/git/objects.ts';

/** A history as child → parents. */
function graph(edges: Record<string, string[]>): (c: string) => Promise<readonly string[] | undefined> {
  return (c) => Promise.resolve(edges[c]);
}

// a ← b ← c ← d (tip); x, y elsewhere
const linear = graph({ a: [], b: ['a'], c: ['b'], d: ['c'], x: [], y: ['x'] });

describe('reachableCommits', () => {
  it('finds the tip itself and its ancestors, not its descendants or strangers', async () => {
    assert.deepEqual([...await reachableCommits('d', ['d', 'b', 'a', 'x'], linear)].sort(), ['a', 'b', 'd']);
    assert.deepEqual([...await reachableCommits('b', ['c', 'd'], linear)], [], 'descendants are not ancestors');
    assert.deepEqual([...await reachableCommits('y', ['a'], linear)], []);
  });

  it('walks through merges (both parents)', async () => {
    // m merges the branches f ← e and h ← g, which fork from r
    const merged = graph({ r: [], e: ['r'], f: ['e'], g: ['r'], h: ['g'], m: ['f', 'h'] });
    assert.deepEqual([...await reachableCommits('m', ['e', 'g', 'r'], merged)].sort(), ['e', 'g', 'r']);
  });

  it('is bounded: a candidate further back than maxCommits counts as not reachable', async () => {
    const edges: Record<string, string[]> = { c0: [] };
    for (let i = 1; i < 50; i++) edges[`c${i}`] = [`c${i - 1}`];
    const long = graph(edges);
    assert.deepEqual([...await reachableCommits('c49', ['c0'], long, 50)], ['c0']);
    assert.deepEqual([...await reachableCommits('c49', ['c0'], long, 49)], []);
    assert.deepEqual([...await reachableCommits('c49', ['c40'], long, 10)], ['c40']);
  });

  it('stops early once every candidate is found, and at unknown commits', async () => {
    let reads = 0;
    const counting = (c: string) => {
      reads++;
      return linear(c);
    };
    assert.deepEqual([...await reachableCommits('d', ['c'], counting)], ['c']);
    assert.ok(reads <= 2, `${reads} commits read`);
    const holey = graph({ d: ['c'], c: ['b'] }); // b is not in the store
    assert.deepEqual([...await reachableCommits('d', ['a', 'b'], holey)], ['b']);
  });
});
