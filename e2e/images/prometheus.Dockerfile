# Prometheus (Debian's package, in the base image) with its configuration at the usual path and
# its data in /tmp. The configuration is mounted by the tests.
ARG BASE
FROM ${BASE}
EXPOSE 9090
USER 65534:65534
ENTRYPOINT ["prometheus", "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/tmp/prometheus", "--web.listen-address=0.0.0.0:9090"]
