# dr-syncer controller image (also the `dr-syncer sync` CLI). Build from the repository root:
#   podman build -t dr-syncer .        (or docker build)
# The base is pinned to a Node release; a release build also pins its digest, e.g.
#   --build-arg NODE_IMAGE=node:20.20.2-bookworm-slim@sha256:<digest of that tag>
# (the tests build on a local stand-in that answers to this tag: test/env/build-images.sh).
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

# Production dependencies only, installed from the lock file as the image runs them.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# Compiled with the dev dependencies (TypeScript); only dist/src leaves this stage.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json --sourceMap false

FROM ${NODE_IMAGE}
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY package.json ./
# The manifests the controller renders (agent DaemonSet, rsync Jobs, GitOps bootstrap).
COPY templates ./templates
# Not root; the root filesystem may be read-only (the chart mounts a writable --cache-dir).
USER 65532:65532
ENV NODE_ENV=production LOG_FORMAT=json
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
