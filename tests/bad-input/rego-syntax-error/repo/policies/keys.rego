package gitward.keys

import rego.v1

deny contains msg if {
	input.computed.keyBits < 2048
	msg := sprintf("weak key %d", [input.computed.keyBits]
}
