package gitward.override_sinks_test

import rego.v1

import data.gitward.override_sinks

sinks := {
	"siem": {"spec": {"type": "splunk-hec"}},
	"pager": {"spec": {"type": "pagerduty", "events": ["certificate.failed"]}},
}

gate(override) := {"name": "prod", "resource": {"spec": {"override": override}}}

test_an_override_without_sinks_is_denied if {
	some f in override_sinks.deny with input as gate({"by": ["lead@example.com"]}) with data.gitward.inventory.Sink as sinks
	f.field == "spec.override"
}

test_a_sink_that_drops_override_events_is_denied if {
	some f in override_sinks.deny with input as gate({"notify": ["siem", "pager"]}) with data.gitward.inventory.Sink as sinks
	f.field == "spec.override.notify[1]"
}

test_sinks_that_deliver_overrides_pass if {
	count(override_sinks.deny) == 0 with input as gate({"notify": ["siem"]}) with data.gitward.inventory.Sink as sinks
}

test_gates_without_override_pass if {
	count(override_sinks.deny) == 0 with input as {"name": "g", "resource": {"spec": {}}}
}
