package gitward.renewal_test

import rego.v1

import data.gitward.renewal

certificate(duration, renew_before, duration_seconds, renew_seconds) := {
	"name": "api",
	"resource": {"spec": {"duration": duration, "renewBefore": renew_before}},
	"computed": {"durationSeconds": duration_seconds, "renewBeforeSeconds": renew_seconds},
}

test_a_short_margin_is_reported if {
	some f in renewal.deny with input as certificate("90d", "5d", 90 * 86400, 5 * 86400)
	f.field == "spec.renewBefore"
	contains(f.msg, "renews 5d before expiry")
}

test_ten_percent_is_enough if {
	count(renewal.deny) == 0 with input as certificate("90d", "9d", 90 * 86400, 9 * 86400)
}
