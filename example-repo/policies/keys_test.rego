package gitward.keys_test

import rego.v1

import data.gitward.keys

certificate(env, algorithm, bits, type) := {
	"kind": "Certificate",
	"name": "api",
	"resource": {"metadata": {"labels": {"env": env}}, "spec": {"keyAlgorithm": algorithm}},
	"computed": {"keyType": type, "keyBits": bits},
}

test_rsa_2048_is_denied_in_prod if {
	findings := keys.deny with input as certificate("prod", "RSA-2048", 2048, "RSA")
	count(findings) == 1
	some f in findings
	f.field == "spec.keyAlgorithm"
}

test_rsa_2048_is_allowed_in_staging if {
	count(keys.deny) == 0 with input as certificate("staging", "RSA-2048", 2048, "RSA")
}

test_rsa_3072_and_curves_pass_in_prod if {
	count(keys.deny) == 0 with input as certificate("prod", "RSA-3072", 3072, "RSA")
	count(keys.deny) == 0 with input as certificate("prod", "ECDSA-P256", 256, "ECDSA")
}

test_issuer_findings_point_at_the_issuer_block if {
	issuer := {
		"kind": "Issuer",
		"name": "ca",
		"resource": {"metadata": {"labels": {"env": "prod"}}, "spec": {"ca": {"keyAlgorithm": "RSA-2048"}}},
		"computed": {"keyType": "RSA", "keyBits": 2048},
	}
	some f in keys.deny with input as issuer
	f.field == "spec.ca.keyAlgorithm"
}
