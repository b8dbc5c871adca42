# Key strength: at least 128-bit security in prod (NIST SP 800-57 Part 1):
# RSA keys of 3072 bits or more, or elliptic curves.
package gitward.keys

import rego.v1

deny contains finding if {
	input.resource.metadata.labels.env == "prod"
	input.computed.keyType == "RSA"
	input.computed.keyBits < 3072
	finding := {
		"msg": sprintf("%s uses %s; prod needs RSA-3072 or stronger, or an ECDSA/Ed25519 key", [input.name, input.resource.spec.keyAlgorithm]),
		"field": "spec.keyAlgorithm",
	}
}
