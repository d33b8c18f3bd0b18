# The Prometheus Operator's config reloader (the init container that writes Prometheus' configuration,
# and the sidecar that reloads it) for `make kind-monitoring` where no registry is reachable: built
# from the operator's Go module by images/gobuild.sh, tagged as its upstream image. The operator
# starts it as /bin/prometheus-config-reloader, upstream's path.
FROM scratch
COPY prometheus-config-reloader /bin/prometheus-config-reloader
USER 65532:65532
ENTRYPOINT ["/bin/prometheus-config-reloader"]
