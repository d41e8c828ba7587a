//go:build tools

// Package tools records kubeadm for the kind node image (make kind-node-image); its
// k8s.io/kubernetes pin is the one of tools/kubernetes.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kubeadm"
)
