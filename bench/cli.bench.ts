// How fast the CLI answers: wall time of `--help` and `version` as compiled JavaScript (what the
// image and `npx dr-syncer` run), through tsx, and `node -e ''` (Node's own start) as the
// baseline; plus what loading a command's code costs (what every --help paid before the help
// texts moved to light modules). Medians of --runs runs each, one at a time.
//
//   npm run build && npx tsx bench/cli.bench.ts [--runs 15]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '15' } } });
const runs = Number(values.runs);
const MAIN = path.resolve('dist/src/cli/main.js');
const AGENT = path.resolve('dist/src/agent/main.js');
if (!fs.existsSync(MAIN)) {
  console.error('no dist/src/cli/main.js: run `npm run build` first');
  process.exit(2);
}

const node = process.execPath;
const cases: [string, string, string[]][] = [
  ["node -e ''  (baseline: Node starts)", node, ['-e', '']],
  ['dr-syncer --help  (compiled)', node, [MAIN, '--help']],
  ['dr-syncer sync --help  (compiled)', node, [MAIN, 'sync', '--help']],
  ['dr-syncer controller --help  (compiled)', node, [MAIN, 'controller', '--help']],
  ['dr-syncer version  (compiled)', node, [MAIN, 'version']],
  ['dr-syncer-agent --help  (compiled)', node, [AGENT, '--help']],
  ['import of sync.js  (the command\'s code: what --help loaded before)', node, ['--input-type=module', '-e', `await import(${JSON.stringify(path.resolve('dist/src/cli/sync.js'))})`]],
  ['import of controller.js + manager.js  (likewise)', node, ['--input-type=module', '-e', `await import(${JSON.stringify(path.resolve('dist/src/cli/controller.js'))}); await import(${JSON.stringify(path.resolve('dist/src/manager.js'))})`]],
  ['dr-syncer sync --help  (tsx, from source)', node, ['--import', 'tsx', path.resolve('src/cli/main.ts'), 'sync', '--help']],
  ['npx dr-syncer sync --help  (compiled, through npm)', 'npx', ['dr-syncer', 'sync', '--help']],
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const rows: { name: string; ms: number }[] = [];
for (const [name, cmd, args] of cases) {
  spawnSync(cmd, args, { stdio: 'ignore' }); // warm the file cache
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const r = spawnSync(cmd, args, { stdio: 'ignore' });
    times.push(performance.now() - t);
    if (r.status !== 0) throw new Error(`${name}: exit ${r.status}`);
  }
  rows.push({ name, ms: median(times) });
}
const base = rows[0]!.ms;
console.log(`Node ${process.version}, ${runs} runs each, median wall time\n`);
console.log('| command | ms | x baseline |\n|---|---:|---:|');
for (const r of rows) console.log(`| ${r.name} | ${r.ms.toFixed(0)} | ${(r.ms / base).toFixed(2)} |`);
