# dr-syncer controller image. Build: docker build -t dr-syncer .
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json --outDir dist --rootDir . && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends rsync openssh-client ca-certificates \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
# The manifests the controller renders (agent DaemonSet, rsync Jobs).
COPY templates ./templates
USER 65532:65532
ENV NODE_ENV=production LOG_FORMAT=json
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
