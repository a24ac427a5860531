# One image with jobmaster, taskexecutor and jmctl; the command picks the program:
#   docker run IMAGE jobmaster --help    |  IMAGE taskexecutor ...  |  IMAGE jmctl ...
#
# The binaries are built on the host by cargo and copied in (Debian's rustc is too old for this
# crate, and the build needs no registry this way):
#   cargo build --release --locked --bins && docker build -t jobmaster:dev .
# scripts/build-images.sh does it all (base image, binaries, this image, the etcd image).
# Without a registry, make the base first (scripts/base-image.sh) and build with
#   --build-arg BASE=jobmaster-base:bookworm
# BIN_DIR picks the binaries (default target/release; scripts/build-images.sh may pass stripped
# debug binaries it staged in target/docker-bin).
#
# Classic builder compatible: no BuildKit syntax.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

# python3 with its standard library (examples/tasks/counter.py, exactly_once.py), curl (the
# health check), ca-certificates. sh, awk, sort and the coreutils the example tasks use are in
# every Debian base.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates curl python3 procps \
 && rm -rf /var/lib/apt/lists/*

# A non-root user runs everything; /data holds a program's own state (the jobmaster's store,
# an executor's data dir), /shared what executors share (persistent partitions, checkpoints,
# job outputs: mount one volume there on every executor), /certs the TLS files.
RUN groupadd --system --gid 10001 jobmaster \
 && useradd --system --uid 10001 --gid jobmaster --home-dir /data --shell /usr/sbin/nologin jobmaster \
 && mkdir -p /data /shared/partitions /shared/checkpoints /shared/output /certs /opt/jobmaster \
 && chown -R jobmaster:jobmaster /data /shared /certs \
 && chmod 0700 /certs

ARG BIN_DIR=target/release
COPY ${BIN_DIR}/jobmaster ${BIN_DIR}/taskexecutor ${BIN_DIR}/jmctl /usr/local/bin/
COPY scripts/docker/entrypoint.sh /usr/local/bin/docker-entrypoint
COPY scripts/docker/healthcheck.sh /usr/local/bin/docker-healthcheck
COPY config/default.toml /etc/jobmaster/default.toml
# The example job specs and task programs, at the paths the *-local.toml specs name (relative
# to the working directory, where tasks run); their outputs (target/...) land in /shared/output.
COPY examples /opt/jobmaster/examples
RUN chmod 0755 /usr/local/bin/docker-entrypoint /usr/local/bin/docker-healthcheck \
 && ln -s /shared/output /opt/jobmaster/target

USER jobmaster
WORKDIR /opt/jobmaster
VOLUME ["/data", "/shared"]
# gRPC and HTTP of a jobmaster; an executor's TaskExecutorService.
EXPOSE 6123 8081 6124
# Alive = the jobmaster answers HTTP (200 when it leads, 503 as a standby), the executor's gRPC
# port accepts connections.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 CMD ["docker-healthcheck"]
ENTRYPOINT ["docker-entrypoint"]
CMD ["jobmaster", "--help"]
