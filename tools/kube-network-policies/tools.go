//go:build tools

// Package tools records the command built from this module for the real node.
package tools

import _ "sigs.k8s.io/kube-network-policies/cmd"
