package gitward.unique_names_test

import rego.v1

import data.gitward.unique_names

test_a_shared_name_is_reported_with_the_other_claimants if {
	findings := unique_names.deny with input as {
		"name": "api",
		"resource": {"spec": {"dnsNames": ["api.example.com"]}},
		"index": {"dnsNames": {"api.example.com": ["api", "api-old"]}},
	}
	some f in findings
	f.msg == "api.example.com is also claimed by api-old"
	f.field == "spec.dnsNames[0]"
}

test_names_of_ones_own_pass if {
	count(unique_names.deny) == 0 with input as {
		"name": "web",
		"resource": {"spec": {"dnsNames": ["www.example.com"]}},
		"index": {"dnsNames": {"www.example.com": ["web"]}},
	}
}
