package gitward.validity_test

import rego.v1

import data.gitward.validity

certificate(env, days, spec) := {
	"name": "api",
	"resource": {"metadata": {"labels": {"env": env}}, "spec": object.union({"duration": sprintf("%dd", [days])}, spec)},
	"computed": {"durationSeconds": days * 86400},
}

test_long_prod_server_certificates_are_denied if {
	some f in validity.deny with input as certificate("prod", 399, {})
	f.field == "spec.duration"
}

test_398_days_is_the_limit if {
	count(validity.deny) == 0 with input as certificate("prod", 398, {})
}

test_part_of_a_day_over_the_limit_counts if {
	over := {
		"name": "api",
		"resource": {"metadata": {"labels": {"env": "prod"}}, "spec": {"duration": "398d12h"}},
		"computed": {"durationSeconds": (398 * 86400) + 43200},
	}
	some f in validity.deny with input as over
	f.msg == "api is valid for 398d12h; prod serverAuth certificates may be valid for at most 398 days"
}

test_client_only_certificates_are_not_limited if {
	count(validity.deny) == 0 with input as certificate("prod", 730, {"usages": ["clientAuth"]})
}

test_staging_is_not_limited if {
	count(validity.deny) == 0 with input as certificate("staging", 730, {})
}
