// Runs one of the build scripts next to this file (build-bins.sh, build-flux.sh) and parses what
// it prints on stdout; its stderr is the progress log.
import { spawn } from 'node:child_process';

/**
 * `bash script`, resolved with parse(stdout). It fails when the script exits non-zero or parse
 * returns undefined (stdout is incomplete), with the tail of stderr in the message.
 */
export function runBuildScript<T>(
  script: string,
  parse: (stdout: string) => T | undefined,
  args: string[] = [],
): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    // A warm check is quiet; a cold build takes many minutes, so show its progress after a while.
    let echo = process.env.TESTENV_VERBOSE === '1';
    const timer = setTimeout(() => {
      echo = true;
      process.stderr.write(err);
    }, 5_000);
    timer.unref();
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (echo) process.stderr.write(d);
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${script}: ${e.message}`));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const value = parse(out);
      if (code !== 0 || value === undefined) {
        reject(new Error(`${script} failed (exit ${code}):\n${err.trimEnd().split('\n').slice(-30).join('\n')}`));
      } else {
        resolve(value);
      }
    });
  });
}
