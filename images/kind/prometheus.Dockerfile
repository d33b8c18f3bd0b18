# Prometheus for `make kind-monitoring` where no registry is reachable: built from its Go module
# (github.com/prometheus/prometheus, Apache-2.0; no web UI assets) by images/gobuild.sh, tagged as its
# upstream image and at the same path, so the kind-prometheus overlay is the same either way. The
# Prometheus Operator passes every flag; data and configuration live on the volumes it mounts.
FROM scratch
COPY prometheus /bin/prometheus
USER 65532:65532
ENTRYPOINT ["/bin/prometheus"]
