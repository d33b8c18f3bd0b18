# The Prometheus Operator for `make kind-monitoring` where no registry is reachable: its cmd/operator
# built from the Go module github.com/prometheus-operator/prometheus-operator (Apache-2.0) by
# images/gobuild.sh, tagged as its upstream image, at upstream's path /bin/operator.
FROM scratch
COPY prometheus-operator /bin/operator
USER 65532:65532
ENTRYPOINT ["/bin/operator"]
