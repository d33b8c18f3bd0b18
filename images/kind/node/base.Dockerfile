# kind's base image (kind's images/base/Dockerfile) rebuilt with no registry: on the debootstrap
# Debian of images/debian.sh, with containerd, runc and the CNI plugins from Debian's packages
# instead of kind's own builds, and crictl built from its Go module (copied into the context).
# The context is kind's images/base/files from its Go module, patched by images/kind/node.sh.
# Built with --network host: apt reads the machine's Debian mirror.
ARG DEBIAN_IMAGE=loopwright-build/debian:bookworm
FROM ${DEBIAN_IMAGE}
COPY files/usr/local/bin/ /usr/local/bin/
RUN chmod 0755 /usr/local/bin/* \
 && DEBIAN_FRONTEND=noninteractive clean-install \
      systemd conntrack iptables nftables iproute2 ethtool util-linux mount kmod libseccomp2 pigz \
      e2fsprogs bash ca-certificates curl jq procps \
      containerd runc containernetworking-plugins
# kind's files after the packages: over an existing /etc/containerd/config.toml, dpkg would stop
# at its conffile prompt.
COPY files/kind/ /kind/
COPY files/etc/ /etc/
COPY crictl /usr/local/bin/crictl
RUN chmod 0755 /kind /kind/bin /kind/bin/* /usr/local/bin/* \
 && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \
 && rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/* \
 && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \
 && ln -sf /usr/lib/systemd/systemd /sbin/init \
 && ln -sf /usr/bin/containerd /usr/local/bin/containerd \
 && mkdir -p /opt/cni/bin /etc/kubernetes/manifests \
 && for plugin in host-local loopback ptp portmap bridge; do ln -sf /usr/lib/cni/$plugin /opt/cni/bin/$plugin; done \
 && ctr oci spec \
    | jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
    | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json \
 && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \
 && systemctl mask systemd-binfmt.service \
 && containerd --version && runc --version && crictl --version
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]
