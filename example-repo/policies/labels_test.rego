package gitward.labels_test

import rego.v1

import data.gitward.labels

test_each_missing_label_is_a_finding if {
	findings := labels.deny with input as {"kind": "Certificate", "name": "api", "resource": {"metadata": {"labels": {"team": "x"}}}}
	count(findings) == 2
}

test_no_labels_at_all if {
	count(labels.deny) == 2 with input as {"kind": "Issuer", "name": "ca", "resource": {"metadata": {}}}
}

test_labelled_resources_pass if {
	count(labels.deny) == 0 with input as {"resource": {"metadata": {"labels": {"owner": "payments", "env": "prod"}}}}
}
