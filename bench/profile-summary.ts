// Where a V8 CPU profile (node --cpu-prof) spent its time: self time per function, the top N,
// total time of our own functions (with what they call), and per package (node_modules/<name>,
// node: internals, our own src/). For the benchmarks'
// --profile option; the conclusions go into docs/benchmarks.md.
//
//   npx tsx bench/profile-summary.ts <file.cpuprofile> [--top 20]
import fs from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '20' }, help: { type: 'boolean', default: false } } });
if (values.help || positionals.length !== 1) {
  console.log('usage: npx tsx bench/profile-summary.ts <file.cpuprofile> [--top N]');
  process.exit(values.help ? 0 : 2);
}

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] }
interface Profile { nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

const prof = JSON.parse(fs.readFileSync(positionals[0]!, 'utf8')) as Profile;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const selfUs = new Map<number, number>();
for (let i = 0; i < prof.samples.length; i++) selfUs.set(prof.samples[i]!, (selfUs.get(prof.samples[i]!) ?? 0) + (prof.timeDeltas[i] ?? 0));
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);

const where = (url: string): string => {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  if (url.startsWith('node:')) return 'node:';
  const own = /\/(src|bench)\/(.*)$/.exec(url);
  return own ? `${own[1]}/${own[2]}` : url || '(native)';
};
const fnKey = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'} ${where(n.callFrame.url)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ''}`;
const pkgKey = (n: ProfileNode) => {
  const w = where(n.callFrame.url);
  return w.startsWith('src/') ? `src/${w.split('/')[1]}` : w;
};
const sum = (key: (n: ProfileNode) => string) => {
  const m = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const k = key(byId.get(id)!);
    m.set(k, (m.get(k) ?? 0) + us);
  }
  return [...m].sort((a, b) => b[1] - a[1]);
};
const pct = (us: number) => `${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms`;
console.log(`${positionals[0]}: ${(total / 1000).toFixed(0)} ms sampled`);
console.log('\nself time by function:');
for (const [k, us] of sum(fnKey).slice(0, Number(values.top))) console.log(`  ${pct(us)}  ${k}`);
// Total time: a sample counts for every function on its stack (once, however deep it recurses).
const parentOf = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
const totalUs = new Map<string, number>();
for (const [id, us] of selfUs) {
  const seen = new Set<string>();
  for (let n: number | undefined = id; n !== undefined; n = parentOf.get(n)) seen.add(fnKey(byId.get(n)!));
  for (const k of seen) totalUs.set(k, (totalUs.get(k) ?? 0) + us);
}
console.log('\ntotal time (with what it calls) by function, our own code:');
for (const [k, us] of [...totalUs].filter(([k]) => / (src|bench)\//.test(k)).sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`  ${pct(us)}  ${k}`);
console.log('\nself time by package or folder:');
for (const [k, us] of sum(pkgKey).slice(0, 15)) console.log(`  ${pct(us)}  ${k}`);
