# The images a kind node preloads (tagged as kubeadm asks), built from the binaries images/gobuild.sh
# made: `docker build --target <name>` from a context holding bin/ and this file.
ARG KIND_BASE=loopwright-build/kind-base
ARG DEBIAN_IMAGE=loopwright-build/debian:bookworm

# Like distroless/static: a passwd, a group, CA certificates (Debian's, from the kind base), /tmp.
FROM ${KIND_BASE} AS ca
FROM scratch AS static
COPY --from=ca /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY etc/ /etc/
COPY tmp/ /tmp/
ENV PATH=/usr/local/bin:/usr/bin:/bin

FROM static AS kube-apiserver
COPY bin/kube-apiserver /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/kube-apiserver"]

FROM static AS kube-controller-manager
COPY bin/kube-controller-manager /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/kube-controller-manager"]

FROM static AS kube-scheduler
COPY bin/kube-scheduler /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/kube-scheduler"]

FROM static AS etcd
COPY bin/etcd /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/etcd"]

FROM static AS coredns
COPY bin/coredns /coredns
ENTRYPOINT ["/coredns"]

FROM scratch AS pause
COPY bin/pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]

# kube-proxy needs iptables (and conntrack): Debian's, behind the backend-choosing wrapper.
FROM ${DEBIAN_IMAGE} AS kube-proxy
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables conntrack \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log
COPY iptables-wrapper /usr/sbin/iptables-wrapper
RUN chmod 0755 /usr/sbin/iptables-wrapper \
 && for tool in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do \
      ln -sf iptables-wrapper /usr/sbin/$tool; done
COPY bin/kube-proxy /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/kube-proxy"]
