import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseRsyncSender } from '../../src/agent/rsync-command.ts';

const ok = (cmd: string) => {
  const r = parseRsyncSender(cmd, '/data');
  assert.ok(r.ok, r.ok ? '' : `${cmd}: ${r.reason}`);
  return r;
};
const refused = (cmd: string, why: RegExp) => {
  const r = parseRsyncSender(cmd, '/data');
  assert.equal(r.ok, false, cmd);
  if (!r.ok) assert.match(r.reason, why, cmd);
};

describe('rsync endpoint command', () => {
  it('accepts what OpenSSH rsync sends for a sender, with escaped paths', () => {
    assert.deepEqual(ok('rsync --server --sender -logDtpre.iLsfxCIvu . /data/').argv, ['--server', '--sender', '-logDtpre.iLsfxCIvu', '.', '/data/']);
    assert.deepEqual(ok('rsync --server --sender -lHogDtpAXre.iLsfxCIvu --numeric-ids --bwlimit=1000 . /data/dir\\ with\\ space/ü/').paths, ['/data/dir with space/ü/']);
    ok('rsync --server --sender -lHogDtprcSze.iLsfxCIvu --inplace . /data');
  });
  it('refuses anything but the sending side, other options, secluded args and paths outside the volume', () => {
    refused('sh -c id', /only "rsync --server --sender/);
    refused('rsync --server -logDtpre.iLsfxCIvu . /data/', /only/);
    refused('rsync --server --sender --remove-source-files . /data/', /--remove-source-files is not allowed/);
    refused('rsync --server --sender --log-file=/tmp/x . /data/', /--log-file is not allowed/);
    refused('rsync --server --sender --rsync-path=sh . /data/', /not allowed/);
    refused('rsync --server --sender --bwlimit=1;id . /data/', /not allowed/);
    refused('rsync --server --sender --numeric-ids=1 . /data/', /not allowed/);
    refused('rsync --server --sender -se.iLsfxCIvu . /data/', /flag -s/);
    refused('rsync --server --sender -logDtpre.iLsfxCIvu . /data/../etc/', /outside \/data/);
    refused('rsync --server --sender -logDtpre.iLsfxCIvu . /etc/passwd', /outside/);
    refused('rsync --server --sender -logDtpre.iLsfxCIvu . /database', /outside/);
    refused('rsync --server --sender -logDtpre.iLsfxCIvu . data', /absolute/);
    refused('rsync --server --sender -logDtpre.iLsfxCIvu .', /no source path/);
    refused('rsync --server --sender -logDtpre.iLsfxCIvu . /data/x\nid', /malformed/);
    refused('rsync --server --sender $(id) . /data/', /not an rsync flag/);
    refused('rsync --server --sender -logDtpre.iLsfxCIvu;id . /data/', /not an rsync flag/);
  });
  it('file names with shell characters are data, never a command: argv is passed without a shell', () => {
    assert.deepEqual(ok("rsync --server --sender -logDtpre.iLsfxCIvu . /data/a\\;\\ rm\\ -rf\\ \\$\\(id\\)\\'").paths, ["/data/a; rm -rf $(id)'"]);
  });
});
