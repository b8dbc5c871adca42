package gitward.wildcards_test

import rego.v1

import data.gitward.wildcards

certificate(env, names) := {"resource": {"metadata": {"labels": {"env": env}}, "spec": {"dnsNames": names}}}

test_prod_wildcards_are_denied if {
	some f in wildcards.deny with input as certificate("prod", ["www.example.com", "*.example.com"])
	f.field == "spec.dnsNames[1]"
}

test_staging_wildcards_pass if {
	count(wildcards.deny) == 0 with input as certificate("staging", ["*.preview.staging.example.com"])
}
