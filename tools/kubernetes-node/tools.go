//go:build tools

// Package tools records the node commands built from this module for the real node of
// `make cluster-up REAL_NODE=1`; its k8s.io/kubernetes pin is the one of tools/kubernetes.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
