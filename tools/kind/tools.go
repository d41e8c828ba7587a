//go:build tools

// Package tools records kind (`make kind-up`, `make test-kind`), built from its Go module.
package tools

import (
	_ "sigs.k8s.io/kind"
)
