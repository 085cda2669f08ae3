# syntax=docker/dockerfile:1
# Multi-stage build of `ca`. The binary needs cgo: crypto11 (through
# miekg/pkcs11) dlopens the PKCS#11 module at run time, so it cannot be a fully
# static binary; it links only glibc dynamically and runs on debian-slim.
# The runtime image carries SoftHSM2 so that docker-compose.yml can run a
# self-contained demo; a production image adds the HSM vendor's module on top
# (README "Containers").
#
# The base images are build arguments so that the same file builds where no
# registry is reachable (.ci/compose-test passes local images):
#   GO_IMAGE       the Go toolchain of the build stage
#   RUNTIME_IMAGE  the runtime's Debian bookworm
#   CA_BINARY      "build" (default): compile in GO_IMAGE; "prebuilt": take
#                  bin/ca from the build context (built on a bookworm host
#                  with `make build`), when no Go image can be had

ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG CA_BINARY=build

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=1 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ca ./cmd/ca
# Marks the binary stages' intermediate images (podman keeps them), so that
# .ci/compose-test can remove them.
LABEL io.workload-ca.stage=binary

FROM scratch AS prebuilt
COPY bin/ca /out/ca
LABEL io.workload-ca.stage=binary

FROM ${CA_BINARY} AS binary

# The runtime's packages and user, a stage of its own so that a local build
# can keep it as a cache (.ci/compose-test tags it).
FROM ${RUNTIME_IMAGE} AS runtime
# The ca user owns the token directory and may read softhsm2.conf (paths
# only). No secret is baked in: the PIN and the database password come from
# the environment or from mounted files (CA_PKCS11_PIN_FILE,
# CA_DATABASE_PASSWORD_FILE) at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates softhsm2 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ca \
 && useradd --system --uid 10001 --gid ca --home-dir /var/lib/ca --no-create-home --shell /usr/sbin/nologin ca \
 && install -d -o ca -g ca -m 0700 /var/lib/ca /var/lib/ca-dev \
 && install -d -o ca -g ca -m 0750 /var/lib/softhsm/tokens \
 && chmod 0755 /etc/softhsm /var/lib/softhsm && chmod 0644 /etc/softhsm/softhsm2.conf

FROM runtime
COPY --from=binary /out/ca /usr/local/bin/ca
USER 10001:10001
WORKDIR /var/lib/ca
ENV CA_DATA_DIR=/var/lib/ca
EXPOSE 8443 8080
# `ca healthcheck` asks the public listener's /readyz (no curl in the image).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["/usr/local/bin/ca", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/ca"]
CMD ["serve"]
