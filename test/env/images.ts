// Container images for the test nodes, built locally by build-images.sh and cached by content
// hash as OCI archives in ~/.cache/dr-syncer/images (no registry is reachable here).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBuildScript } from './build.ts';

export interface BuiltImage {
  /** The name pods use, e.g. localhost/dr-syncer/controller:<hash>. */
  ref: string;
  /** OCI archive to import into a node's containerd. */
  archive: string;
}

export interface BaseImages {
  pause: BuiltImage;
  debianBase: BuiltImage;
  /**
   * STAND-IN for docker.io/library/node:<this machine's Node version>-bookworm-slim (the tag the
   * Dockerfiles pin, e.g. node:20.20.2-bookworm-slim): the Debian base plus this machine's Node 20
   * and npm. Not the official image (no yarn, corepack, `node` user or entrypoint).
   */
  nodeStandIn: BuiltImage;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SCRIPT = path.join(HERE, 'build-images.sh');
export const REPO_ROOT = path.resolve(HERE, '..', '..');

function parse(stdout: string): BuiltImage[] | undefined {
  const images = stdout
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [ref, archive] = l.split(' ');
      return ref && archive ? { ref, archive } : undefined;
    });
  return images.length >= 3 && images.every((i) => i !== undefined) ? (images as BuiltImage[]) : undefined;
}

let basePromise: Promise<BaseImages> | undefined;

/** pause, debian-base and the node stand-in (built once, then cached). */
export function baseImages(): Promise<BaseImages> {
  basePromise ??= runBuildScript(SCRIPT, parse).then(
    ([pause, debianBase, nodeStandIn]) => ({ pause, debianBase, nodeStandIn }) as BaseImages,
    (err: unknown) => {
      basePromise = undefined;
      throw err;
    },
  );
  return basePromise;
}

/**
 * Builds a project image from its Dockerfile (`podman build --pull=never`, the node stand-in as
 * the pinned node:<version>-bookworm-slim), cached by what the Dockerfile copies. name: e.g.
 * 'controller', 'agent'.
 */
export async function buildImage(name: string, dockerfile = 'Dockerfile', context = REPO_ROOT): Promise<BuiltImage> {
  const images = await runBuildScript(SCRIPT, parse, [context, path.resolve(context, dockerfile), name]);
  const img = images[3];
  if (!img) throw new Error(`build-images.sh printed no image for ${name}`);
  return img;
}
