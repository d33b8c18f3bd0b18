# The Python base of Loopwright's images where no registry is reachable: Debian's own python3
# (3.11 on bookworm) on the debootstrap image of images/debian.sh, with CA certificates for S3 over
# HTTPS. No pip, no compiler. Built with --network host: apt reads the machine's Debian mirror.
ARG DEBIAN_IMAGE=loopwright-build/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 ca-certificates netbase \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log \
 && python3 -c 'import ssl, venv'
ENV LANG=C.UTF-8
CMD ["python3"]
