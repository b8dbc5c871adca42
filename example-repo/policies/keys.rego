# Key strength (NIST SP 800-57 Part 1 Rev. 5): at least 112-bit security everywhere, and
# 128-bit in prod, where RSA keys need 3072 bits; elliptic curves meet both.
package gitward.keys

import rego.v1

min_rsa_bits := {"prod": 3072}

default_min_rsa_bits := 2048

env := object.get(input.resource.metadata, ["labels", "env"], "")

# Where the key algorithm is written: a certificate's spec, or its issuer type's block.
field := "spec.keyAlgorithm" if input.kind == "Certificate"

field := sprintf("spec.%s.keyAlgorithm", [issuer_type]) if {
	input.kind == "Issuer"
	some issuer_type in ["selfSigned", "ca"]
	input.resource.spec[issuer_type]
}

deny contains finding if {
	input.computed.keyType == "RSA"
	required := object.get(min_rsa_bits, env, default_min_rsa_bits)
	input.computed.keyBits < required
	finding := {
		"msg": sprintf("%s %s has a %d-bit RSA key; %s needs %d bits or an elliptic curve", [input.kind, input.name, input.computed.keyBits, env, required]),
		"field": field,
	}
}
