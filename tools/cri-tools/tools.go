//go:build tools

// Package tools records crictl for the kind node image (kind itself runs it in the node).
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
