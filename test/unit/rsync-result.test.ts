import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseRsyncStats, rsyncResult } from '../../src/pvc/rsync-result.ts';

// Output of rsync 3.2/3.5 --stats (digit grouping with commas).
const STATS = `
Number of files: 1,210 (reg: 1,100, dir: 100, link: 10)
Number of created files: 12 (reg: 12)
Number of deleted files: 3 (reg: 3)
Number of regular files transferred: 15
Total file size: 1,073,741,824 bytes
Total transferred file size: 5,242,880 bytes
Literal data: 4,194,304 bytes
Matched data: 1,048,576 bytes
File list size: 40,000
Total bytes sent: 4,300,000
Total bytes received: 20,000

sent 4,300,000 bytes  received 20,000 bytes  1,440,000.00 bytes/sec
`;

describe('rsync results', () => {
  it('parses the figures of --stats', () => {
    assert.deepEqual(parseRsyncStats(STATS), { filesTotal: 1210, filesTransferred: 15, filesDeleted: 3, bytesTransferred: 4194304, totalSize: 1073741824 });
    assert.equal(parseRsyncStats('rsync: connection unexpectedly closed'), undefined);
  });
  it('partial transfers (23, 24) are failures with a reason, never success', () => {
    assert.equal(rsyncResult(0, STATS).ok, true);
    for (const code of [23, 24]) {
      const r = rsyncResult(code, STATS, 'rsync: [sender] send_files failed to open "/data/x": Permission denied (13)\n');
      assert.equal(r.ok, false);
      assert.match(r.message, /partial transfer/);
      assert.match(r.message, /Permission denied/);
      assert.equal(r.figures?.filesTransferred, 15, 'the figures are kept for status');
    }
    assert.match(rsyncResult(255, '', 'Host key verification failed.').message, /ssh failed.*Host key verification failed/);
  });
});
