# Build: compile TypeScript, then keep only production dependencies.
FROM node:20-bookworm-slim AS build
WORKDIR /app
# node-gyp builds the image proxies' fd-passing addon (native/fdpass.c).
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY native ./native
RUN npm run install
COPY tsconfig.json ./
COPY src ./src
COPY cmd ./cmd
COPY test ./test
COPY bench ./bench
COPY scripts ./scripts
RUN npm run build && npm prune --omit=dev

# The ko host runs `go build`: the Go toolchain comes from the official image (a recent
# Go, since current modules name go 1.21+ in go.mod). CGO is off, so it needs no C
# compiler and no shell.
ARG GO_IMAGE=golang:1.23-bookworm
FROM ${GO_IMAGE} AS go

# Run: Node on distroless, as the image's non-root user. Only compiled code and
# production modules are copied; tests and benchmarks stay behind.
FROM gcr.io/distroless/nodejs20-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
# The bundle starts faster than the compiled tree (scripts/bundle.mjs says why).
COPY --from=build /app/dist/bundle ./dist/bundle
COPY --from=build /app/native/build/Release/fdpass.node ./native/build/Release/fdpass.node
USER nonroot
EXPOSE 8080
# --initial-old-space-size: a floor under V8's old-generation limit. Without it V8 keeps a
# small heap's limit a few MB above what is live, and a blob copy (little JavaScript, many
# socket buffers) ran a full mark-compact every ~15 MB copied (README, "Start time and memory").
# package.json's start script gives the same flags; a test checks they agree.
CMD ["--initial-old-space-size=64", "dist/bundle/kontain.js", "serve"]
