# The kind node image's root filesystem, assembled as kind's images/base/Dockerfile lays it out,
# from a debootstrap'd Debian (BASE) with Debian's containerd, runc and CNI plugins, kind's own
# base files (files/, copied from its Go module) and the pinned Kubernetes binaries (bin/).
# tools/images/kind_node.sh writes overrides/ and then preloads the control-plane images and commits the image.
ARG BASE
FROM ${BASE}
COPY files/usr/local/bin/ /usr/local/bin/
COPY files/kind/ /kind/
COPY files/etc/ /etc/
COPY overrides/ /
COPY bin/kubeadm bin/kubelet bin/kubectl /usr/bin/
COPY bin/crictl /usr/local/bin/
# kind's units run /usr/local/bin/containerd and /usr/local/sbin/runc; Debian's are in /usr/bin, /usr/sbin.
RUN chmod 755 /kind /kind/bin /kind/bin/* /usr/local/bin/* /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl \
    && ln -s /usr/bin/containerd /usr/local/bin/containerd \
    && ln -s /usr/bin/ctr /usr/local/bin/ctr \
    && ln -s /usr/bin/containerd-shim-runc-v2 /usr/local/bin/containerd-shim-runc-v2 \
    && ln -s /usr/sbin/runc /usr/local/sbin/runc \
    && mkdir -p /opt/cni && ln -s /usr/lib/cni /opt/cni/bin \
    && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \
    && rm -f /lib/systemd/system/multi-user.target.wants/* \
    && rm -f /etc/systemd/system/*.wants/* \
    && rm -f /lib/systemd/system/local-fs.target.wants/* \
    && rm -f /lib/systemd/system/sockets.target.wants/*udev* \
    && rm -f /lib/systemd/system/sockets.target.wants/*initctl* \
    && rm -f /lib/systemd/system/basic.target.wants/* \
    && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \
    && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \
    && systemctl mask systemd-binfmt.service \
    && mkdir -p /etc/kubernetes/manifests \
    && for i in 0 1 2 3 4 5 6 7; do mkdir -p -m 0777 /var/local-volumes/local-$i; done \
    && ctr oci spec \
        | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
        | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json
# /var/local-volumes: the local StorageClass's volumes, writable by any pod's user as
# local-path-provisioner makes its directories (kind's default storage).
# systemd reads that it runs in a container; it stops on SIGRTMIN+3 (SIGTERM re-executes it).
ENV container=docker
STOPSIGNAL SIGRTMIN+3
