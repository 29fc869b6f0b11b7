# Prometheus 3.5 LTS (the static binary scripts/fetch-prometheus3 unpacks from Debian's archive,
# the whole build context) on the Debian base, with its configuration at the usual path and its
# data in /tmp. The configuration is mounted by the tests.
ARG BASE
FROM ${BASE}
COPY prometheus /usr/local/bin/prometheus3
EXPOSE 9090
USER 65534:65534
ENTRYPOINT ["prometheus3", "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/tmp/prometheus", "--web.listen-address=0.0.0.0:9090"]
