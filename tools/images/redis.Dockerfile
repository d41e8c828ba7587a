# Redis for the chart's bundled queue when no Redis image can be pulled. BASE: a Debian root
# filesystem with redis-server and redis-cli (tools/images/images.sh makes it offline).
ARG BASE
FROM ${BASE}
# The uid the chart's Redis pod runs as; /data is its volume.
USER 999:999
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["redis-server"]
