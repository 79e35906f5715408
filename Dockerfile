# graft: multi-stage build.
#   docker build -t graft .
#   docker run -p 8080:8080 -v graft-data:/data --stop-timeout 40 -e ENCRYPTION_KEY=... graft
#
# Stage 1 builds a release binary; dependencies are compiled in their own
# layer, so editing graft's sources does not rebuild them.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Stub targets with the manifest's names, only to build the dependencies.
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && echo '' > src/lib.rs \
 && echo 'fn main() {}' > benches/intake.rs \
 && echo 'fn main() {}' > benches/overlay.rs \
 && cargo build --release --locked --bin graft \
 && rm -rf src benches
# Everything the build reads: sources, migrations (embedded by sqlx), the
# GitHub App manifest (embedded for /setup/github), bench targets named in
# Cargo.toml.
COPY src ./src
COPY migrations ./migrations
COPY app-manifest ./app-manifest
COPY benches ./benches
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin graft \
 && strip target/release/graft

# Stage 2: a slim runtime with git (graft pushes with the git CLI) and CA
# certificates (HTTPS to GitHub/GitLab). graft always runs as the non-root
# user `graft`: /usr/local/bin/graft (deploy/graft-as-user.sh) drops root
# after handing a root-owned volume (Fly.io, bind mounts) to that user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --create-home graft
COPY --from=build /src/target/release/graft /usr/local/lib/graft/graft
COPY deploy/graft-as-user.sh /usr/local/bin/graft
WORKDIR /data
# /data holds the SQLite database and the repository mirrors; mount a
# volume there (or use PostgreSQL and keep only the mirrors).
VOLUME ["/data"]
ENV PORT=8080 \
    GRAFT_BIND=0.0.0.0 \
    DATABASE_URL=sqlite:///data/graft.db \
    GRAFT_WORK_DIR=/data/work \
    GRAFT_LOG_FORMAT=json
EXPOSE 8080
# graft stops gracefully on SIGTERM: no new jobs, running ones finish.
STOPSIGNAL SIGTERM
ENTRYPOINT ["graft"]
CMD ["serve"]
