// Git object, tree, commit, pack and index encodings against the git CLI: our bytes must be
// exactly git's. (Runs `git` in temporary repositories; no servers, no network.)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAdvertisement, parseReport } from '../../src/adapters/git/http.ts';
import { ObjectStore } from '../../src/adapters/git/store.ts';
import type { TreeEntry } from '../../src/adapters/git/objects.ts';
import {
  decodeLoose, EMPTY_TREE, encodeCommit, encodeLoose, encodePack, encodePackIndex, encodeTree, hashObject, packObject, parseCommit, parsePktLines, parseTree, pktLine,
} from '../../src/adapters/git/objects.ts';

let repo: string;
const git = (args: string[], input?: string | Buffer, env: Record<string, string> = {}) =>
  execFileSync('git', args, { cwd: repo, input, env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
const gitText = (args: string[], input?: string | Buffer, env?: Record<string, string>) => git(args, input, env).toString('utf8').trim();

before(() => {
  repo = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-objects-'));
  gitText(['init', '-q', '--bare', '.']);
});
after(() => fs.rmSync(repo, { recursive: true, force: true }));

const contents = ['', 'a', 'hello\n', 'ümlaut ✓ 日本\n', 'x'.repeat(70_000), `apiVersion: v1\nkind: ConfigMap\n${'data: 1\n'.repeat(50)}`];

describe('git objects', () => {
  it('blob oids are git hash-object\'s', () => {
    for (const c of contents) assert.equal(hashObject('blob', c), gitText(['hash-object', '--stdin'], c), JSON.stringify(c.slice(0, 20)));
    assert.equal(hashObject('blob', Buffer.from('hello\n')), gitText(['hash-object', '--stdin'], 'hello\n'));
    assert.equal(hashObject('tree', Buffer.alloc(0)), EMPTY_TREE);
  });

  it('trees are git mktree\'s, in git\'s order (a tree sorts as if its name ended in "/")', () => {
    const blob = hashObject('blob', 'x');
    const sub = hashObject('tree', Buffer.alloc(0));
    const names: [string, 'blob' | 'tree'][] = [
      ['a', 'tree'], ['a.b', 'blob'], ['a-b', 'blob'], ['a0', 'blob'], ['ab', 'tree'], ['a=', 'blob'], ['b', 'blob'], ['B', 'blob'],
      ['kustomization.yaml', 'blob'], ['ns', 'tree'], ['ns.yaml', 'blob'], ['ns-x', 'tree'], ['ü', 'blob'], ['z', 'tree'], ['z.', 'blob'], ['z0', 'tree'],
    ];
    const entries: TreeEntry[] = names.map(([p, type]) => ({ mode: type === 'tree' ? '040000' : '100644', path: p, oid: type === 'tree' ? sub : blob, type }));
    entries.push({ mode: '100755', path: 'run.sh', oid: blob, type: 'blob' });
    const ours = encodeTree([...entries].reverse());
    const mktree = entries.map((e) => `${e.mode} ${e.type} ${e.oid}\t${e.path}`).join('\n') + '\n';
    const oid = gitText(['mktree', '--missing'], mktree);
    assert.equal(hashObject('tree', ours), oid);
    assert.deepEqual(ours, git(['cat-file', 'tree', oid]));
    const parsed = parseTree(ours);
    assert.equal(parsed.length, entries.length);
    assert.deepEqual(new Set(parsed.map((e) => JSON.stringify(e))), new Set(entries.map((e) => JSON.stringify(e))));
    assert.throws(() => encodeTree([entries[1]!, entries[1]!]), /duplicate/);
    assert.throws(() => encodeTree([{ ...entries[1]!, path: 'a' }, entries[2]!, entries[0]!]), /duplicate/);
    assert.throws(() => encodeTree([{ ...entries[1]!, path: 'a/b' }]), /invalid/);
  });

  it('names beyond the BMP sort by their UTF-8 bytes, as git sorts them', () => {
    const blob = hashObject('blob', 'y');
    const entries: TreeEntry[] = ['\u{1F600}', '\uE000', '\uFFFD', 'z', '\u00E9'].map((p) => ({ mode: '100644', path: p, oid: blob, type: 'blob' }));
    entries.push({ mode: '040000', path: '\u{1F600}x', oid: EMPTY_TREE, type: 'tree' });
    const oid = gitText(['mktree', '--missing'], entries.map((e) => `${e.mode} ${e.type} ${e.oid}\t${e.path}`).join('\n') + '\n');
    assert.deepEqual(encodeTree(entries), git(['cat-file', 'tree', oid]));
  });

  it('commits are git commit-tree\'s', () => {
    const tree = gitText(['mktree'], '');
    const env = { GIT_AUTHOR_NAME: 'dr-syncer', GIT_AUTHOR_EMAIL: 'dr@example.com', GIT_AUTHOR_DATE: '1700000000 +0000', GIT_COMMITTER_NAME: 'dr-syncer', GIT_COMMITTER_EMAIL: 'dr@example.com', GIT_COMMITTER_DATE: '1700000000 +0000' };
    const first = gitText(['commit-tree', tree, '-m', 'first'], undefined, env);
    const second = gitText(['commit-tree', tree, '-p', first, '-F', '-'], 'sync: two\n\nbody line\nDr-Syncer: x\n', env);
    const who = { name: 'dr-syncer', email: 'dr@example.com', timestamp: 1700000000, timezoneOffset: 0 };
    const c1 = encodeCommit({ tree, parents: [], author: who, committer: who, message: 'first' });
    const c2 = encodeCommit({ tree, parents: [first], author: who, committer: who, message: 'sync: two\n\nbody line\nDr-Syncer: x' });
    assert.equal(hashObject('commit', c1), first);
    assert.equal(hashObject('commit', c2), second);
    assert.deepEqual(parseCommit(c2), { tree, parents: [first] });
    assert.deepEqual(parseCommit(git(['cat-file', 'commit', second])), { tree, parents: [first] });
  });

  it('loose objects are readable by git, and we read git\'s', () => {
    const data = Buffer.from('a loose object\n');
    const oid = hashObject('blob', data);
    const file = path.join(repo, 'objects', oid.slice(0, 2), oid.slice(2));
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, encodeLoose('blob', data));
    assert.equal(gitText(['cat-file', '-p', oid]), 'a loose object');
    const theirs = gitText(['hash-object', '-w', '--stdin'], 'written by git\n');
    const o = decodeLoose(fs.readFileSync(path.join(repo, 'objects', theirs.slice(0, 2), theirs.slice(2))));
    assert.equal(o.type, 'blob');
    assert.equal(o.data.toString(), 'written by git\n');
  });

  it('packs pass git index-pack and verify-pack, and our index is git\'s byte for byte', () => {
    const objs = contents.map((c) => packObject('blob', Buffer.from(c)));
    const blobs: TreeEntry[] = objs.map((o, i) => ({ mode: '100644', path: `f${i}`, oid: o.oid, type: 'blob' }));
    const tree = encodeTree(blobs);
    objs.push(packObject('tree', tree));
    const who = { name: 'a', email: 'a@b', timestamp: 1, timezoneOffset: 120 };
    objs.push(packObject('commit', encodeCommit({ tree: hashObject('tree', tree), parents: [], author: who, committer: who, message: 'm' })));
    const pack = encodePack(objs);
    const out = gitText(['index-pack', '--stdin', '--strict'], pack.pack);
    assert.equal(out, `pack\t${pack.checksum}`);
    const idxFile = path.join(repo, 'objects', 'pack', `pack-${pack.checksum}.idx`);
    assert.deepEqual(encodePackIndex(pack), fs.readFileSync(idxFile));
    const verify = gitText(['verify-pack', '-v', idxFile]);
    for (const o of objs) assert.match(verify, new RegExp(`^${o.oid} ${o.type} `, 'm'));
    assert.match(verify, /non delta: 8 objects/);
    assert.equal(gitText(['cat-file', '-p', objs[2]!.oid]), 'hello');
    assert.equal(gitText(['cat-file', '-s', objs[4]!.oid]), '70000');
  });

  it('an index with a 64-bit offset table has the layout git reads', () => {
    const idx = encodePackIndex({ pack: Buffer.alloc(0), checksum: 'ab'.repeat(20), entries: [{ oid: '11'.repeat(20), offset: 12, crc: 1 }, { oid: '22'.repeat(20), offset: 2 ** 32 + 5, crc: 2 }] });
    const n = 2;
    const offsets = 8 + 1024 + n * 24;
    assert.equal(idx.readUInt32BE(offsets), 12);
    assert.equal(idx.readUInt32BE(offsets + 4), 0x80000000);
    assert.equal(idx.readBigUInt64BE(offsets + 8), BigInt(2 ** 32 + 5));
    assert.equal(idx.length, 8 + 1024 + n * 28 + 8 + 40);
  });
});

describe('the object store reads what git writes', () => {
  const similar = (i: number) => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-${i}}\ndata:\n${Array.from({ length: 60 }, (_, k) => `  key${k}: ${k === i % 60 ? 'changed' : 'value'}-${k}\n`).join('')}`;

  for (const [name, packArgs] of [['offset deltas (git repack)', ['repack', '-adfq', '--depth=20']], ['ref deltas (git pack-objects)', null]] as const) {
    it(name, async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drs-deltas-'));
      try {
        // An identity of its own: a fresh machine (CI) has no global git user.
        const identity = { GIT_AUTHOR_NAME: 'a', GIT_AUTHOR_EMAIL: 'a@b', GIT_COMMITTER_NAME: 'a', GIT_COMMITTER_EMAIL: 'a@b' };
        const run = (args: string[], input?: string) => execFileSync('git', args, { cwd: dir, input, env: { ...process.env, ...identity }, maxBuffer: 64 << 20 }).toString('utf8').trim();
        run(['init', '-q', '--bare', '.']);
        const oids = Array.from({ length: 40 }, (_, i) => run(['hash-object', '-w', '--stdin'], similar(i)));
        const tree = run(['mktree'], oids.map((o, i) => `100644 blob ${o}\tcm-${i}.yaml`).join('\n') + '\n');
        if (packArgs) {
          run(['update-ref', 'refs/heads/main', run(['commit-tree', tree, '-m', 'x'], undefined)]);
          run([...packArgs]);
        } else {
          // Without --delta-base-offset, pack-objects names delta bases by oid.
          run(['pack-objects', '-q', '--window=50', '--depth=20', 'objects/pack/pack'], [...oids, tree].join('\n') + '\n');
          run(['prune-packed']);
        }
        const packs = fs.readdirSync(path.join(dir, 'objects', 'pack')).filter((f) => f.endsWith('.idx'));
        assert.equal(packs.length, 1);
        const verify = run(['verify-pack', '-v', path.join(dir, 'objects', 'pack', packs[0]!)]);
        assert.match(verify, /chain length = \d+: \d+ objects/, 'the pack has deltas');
        const store = new ObjectStore(dir);
        for (const [i, oid] of oids.entries()) assert.equal(await store.readBlob(oid), similar(i));
        assert.deepEqual((await store.readTree(tree)).map((e) => e.oid).sort(), [...oids].sort());
        assert.equal(await store.has('1'.repeat(40)), false);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('smart protocol framing', () => {
  it('pkt-lines round-trip, flush is null', () => {
    const buf = Buffer.concat([pktLine('hello\n'), Buffer.from('0000'), pktLine(Buffer.from([1, 2, 3]))]);
    assert.equal(buf.subarray(0, 4).toString(), '000a');
    assert.deepEqual(parsePktLines(buf).map((b) => (b ? [...b] : null)), [[...Buffer.from('hello\n')], null, [1, 2, 3]]);
  });

  it('parses git receive-pack\'s own ref advertisement', () => {
    const empty = parseAdvertisement(git(['receive-pack', '--advertise-refs', '.']), 'git-receive-pack');
    assert.equal(empty.refs.size, 0);
    assert.ok(empty.capabilities.has('report-status'));
    const tree = gitText(['mktree'], '');
    const c = gitText(['commit-tree', tree, '-m', 'x'], undefined, { GIT_AUTHOR_NAME: 'a', GIT_AUTHOR_EMAIL: 'a@b', GIT_COMMITTER_NAME: 'a', GIT_COMMITTER_EMAIL: 'a@b' });
    gitText(['update-ref', 'refs/heads/main', c]);
    const served = Buffer.concat([pktLine('# service=git-receive-pack\n'), Buffer.from('0000'), git(['receive-pack', '--advertise-refs', '.'])]);
    const adv = parseAdvertisement(served, 'git-receive-pack');
    assert.equal(adv.refs.get('refs/heads/main'), c);
    assert.ok(adv.capabilities.has('side-band-64k'));
  });

  it('parses report-status, plain and in side-band 1, and band 3 as an error', () => {
    const status = Buffer.concat([pktLine('unpack ok\n'), pktLine('ng refs/heads/main failed to update ref\n'), Buffer.from('0000')]);
    const plain = parseReport(status, false);
    assert.equal(plain.unpack, 'ok');
    assert.equal(plain.refs.get('refs/heads/main'), 'failed to update ref');
    const banded = Buffer.concat([pktLine(Buffer.concat([Buffer.from([2]), Buffer.from('progress\n')])), pktLine(Buffer.concat([Buffer.from([1]), status])), Buffer.from('0000')]);
    assert.deepEqual(parseReport(banded, true), plain);
    const ok = parseReport(Buffer.concat([pktLine('unpack ok\n'), pktLine('ok refs/heads/main\n'), Buffer.from('0000')]), false);
    assert.ok(ok.refs.has('refs/heads/main'));
    assert.equal(ok.refs.get('refs/heads/main'), undefined);
    assert.throws(() => parseReport(pktLine(Buffer.concat([Buffer.from([3]), Buffer.from('boom')])), true), /remote error: boom/);
  });
});
