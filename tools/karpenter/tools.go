//go:build tools

// Package tools records the Karpenter command (kwok provider) built from this module.
package tools

import _ "sigs.k8s.io/karpenter/kwok"
