# The S3 server of the kind overlay where no registry is reachable: versitygw (a real S3 gateway,
# Apache-2.0) built from its Go module by images/gobuild.sh, tagged as its upstream image so the
# overlay is the same either way. Context: a directory holding the versitygw binary.
FROM scratch
COPY versitygw /usr/local/bin/versitygw
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/versitygw"]
