# etcd for the compose cluster, from Debian's etcd-server package on the same base as the
# jobmaster image (no registry needed; with one, quay.io/coreos/etcd works as well).
#   docker build -f scripts/docker/etcd.Dockerfile --build-arg BASE=jobmaster-base:bookworm \
#     -t jobmaster-etcd:dev scripts/docker
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server etcd-client \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/etcd && chown etcd:etcd /var/lib/etcd
USER etcd
VOLUME ["/var/lib/etcd"]
EXPOSE 2379 2380
HEALTHCHECK --interval=5s --timeout=3s --retries=3 CMD ["etcdctl", "--endpoints=http://127.0.0.1:2379", "endpoint", "health"]
ENTRYPOINT ["etcd"]
