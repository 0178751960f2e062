# Builds the ipsfhir binary into a minimal image (no shell, non-root).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/ipsfhir ./cmd/ipsfhir && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ipsfhir /usr/local/bin/ipsfhir
# A data directory the non-root user owns, for volumes mounted at /data.
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot
ENTRYPOINT ["/usr/local/bin/ipsfhir"]
