// The whole machine's CPU use, for the benchmarks that share it with the parts they start (API
// server, etcd, Git server, agents): /proc/stat's first line, ticks summed over all cores.
import fs from 'node:fs';

export interface Jiffies {
  busy: number;
  total: number;
}

/** Busy and total ticks of the whole machine so far. */
export function machineJiffies(): Jiffies {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - (f[4] ?? 0), total }; // idle and iowait are not busy
}

/** The share of the machine (0..1, all cores) that was busy between two readings. */
export const busyShare = (from: Jiffies, to: Jiffies): number => (to.busy - from.busy) / Math.max(1, to.total - from.total);
