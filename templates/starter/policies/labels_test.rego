# Policy tests: `gitward test` runs every `test_` rule of the `*_test.rego` files.
package gitward.labels_test

import rego.v1

import data.gitward.labels

test_a_labelled_certificate_passes if {
	count(labels.deny) == 0 with input as {"resource": {"metadata": {"labels": {"owner": "web", "env": "prod"}}}}
}

test_each_missing_label_is_reported if {
	count(labels.deny) == 2 with input as {"kind": "Certificate", "name": "app", "resource": {"metadata": {}}}
}
