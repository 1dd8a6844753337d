import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalRepoUrl } from '../../src/controllers/replication.ts';

describe('Git targets', () => {
  it('one repository however its URL is spelled (credentials, case, trailing slash, .git)', () => {
    const a = canonicalRepoUrl('https://git.example.com/platform/dr');
    for (const u of ['https://git.example.com/platform/dr/', 'https://GIT.example.com/platform/dr.git', 'https://bot:t0ken@git.example.com/platform/dr.git/']) assert.equal(canonicalRepoUrl(u), a, u);
    assert.notEqual(canonicalRepoUrl('https://git.example.com/platform/dr2'), a);
    assert.doesNotMatch(canonicalRepoUrl('https://bot:t0ken@git.example.com/x'), /t0ken/);
    assert.equal(canonicalRepoUrl('/srv/dr.git/'), canonicalRepoUrl('/srv/dr'));
  });
});
