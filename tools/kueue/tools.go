//go:build tools

// Package tools records the Kueue manager built from this module.
package tools

import _ "sigs.k8s.io/kueue/cmd/kueue"
