package gitward.broken

import rego.v1

deny contains msg if {
	bits < 2048
	msg := "weak key"
}
