# syntax=docker/dockerfile:1
# Multi-stage build of `ca`. The binary needs cgo: crypto11 (through
# miekg/pkcs11) dlopens the PKCS#11 module at run time, so it cannot be a fully
# static binary; it links only glibc dynamically and runs on debian-slim.
# The runtime image carries SoftHSM2 so that docker-compose.yml can run a
# self-contained demo; a production image would carry the HSM vendor's module.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=1 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ca ./cmd/ca

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates softhsm2 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/ca --create-home ca \
 && mkdir -p /var/lib/softhsm/tokens \
 && chown -R ca:ca /var/lib/softhsm/tokens /var/lib/ca
COPY --from=build /out/ca /usr/local/bin/ca
USER ca
WORKDIR /var/lib/ca
ENV CA_DATA_DIR=/var/lib/ca
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/ca"]
CMD ["serve"]
