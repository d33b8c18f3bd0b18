# The resource metrics API of the kind overlay where no registry is reachable: metrics-server
# (sigs.k8s.io/metrics-server, Apache-2.0) built from its Go module by images/gobuild.sh, tagged as
# its upstream image so the overlay is the same either way. Context: a directory holding the
# metrics-server binary (static: CGO_ENABLED=0). Certificates go to --cert-dir=/tmp, an emptyDir.
FROM scratch
COPY metrics-server /usr/local/bin/metrics-server
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/metrics-server"]
