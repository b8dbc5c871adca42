package gitward.domains_test

import rego.v1

import data.gitward.domains

allowed := {"prod": ["example.com"], "staging": ["staging.example.com"]}

certificate(env, names) := {
	"name": "web",
	"resource": {"metadata": {"labels": {"env": env}}, "spec": {"dnsNames": names}},
}

test_names_inside_the_domain_pass if {
	count(domains.deny) == 0 with input as certificate("prod", ["example.com", "www.example.com", "*.api.example.com"])
		with data.domains.allowed as allowed
}

test_a_name_outside_is_reported_at_its_index if {
	findings := domains.deny with input as certificate("prod", ["www.example.com", "www.example.org"])
		with data.domains.allowed as allowed
	count(findings) == 1
	some f in findings
	f.field == "spec.dnsNames[1]"
}

test_a_look_alike_domain_is_outside if {
	count(domains.deny) == 1 with input as certificate("prod", ["badexample.com"])
		with data.domains.allowed as allowed
}

test_prod_names_are_not_allowed_in_staging if {
	count(domains.deny) == 1 with input as certificate("staging", ["api.example.com"])
		with data.domains.allowed as allowed
}

test_an_unknown_environment_is_reported if {
	some f in domains.deny with input as certificate("qa", []) with data.domains.allowed as allowed
	f.field == "metadata.labels.env"
}
