package gitward.public_ips_test

import rego.v1

import data.gitward.public_ips

issuers := {
	"letsencrypt": {"metadata": {"labels": {}}, "spec": {"acme": {"account": "le"}}},
	"private": {"metadata": {"labels": {"env": "prod"}}, "spec": {"ca": {"issuerRef": "root"}}},
	"partner": {"metadata": {"labels": {"trust": "public"}}, "spec": {"ca": {"issuerRef": "root"}}},
}

certificate(issuer) := {"name": "vpn", "resource": {"spec": {"issuerRef": issuer, "ipAddresses": ["10.0.0.1"]}}}

test_acme_certificates_name_no_ip_address if {
	some f in public_ips.deny with input as certificate("letsencrypt") with data.gitward.inventory.Issuer as issuers
	f.field == "spec.ipAddresses[0]"
}

test_issuers_labelled_public_count_as_public if {
	count(public_ips.deny) == 1 with input as certificate("partner") with data.gitward.inventory.Issuer as issuers
}

test_private_issuers_may_certify_addresses if {
	count(public_ips.deny) == 0 with input as certificate("private") with data.gitward.inventory.Issuer as issuers
}
