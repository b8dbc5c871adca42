package gitward.gate_coverage_test

import rego.v1

import data.gitward.gate_coverage

gates := {
	"prod": {"spec": {"appliesTo": {"kinds": ["Certificate"], "selector": {"env": "prod", "owner": ["payments", "web"]}}}},
	"issuers": {"spec": {"appliesTo": {"kinds": ["Issuer"]}}},
}

certificate(owner) := {"kind": "Certificate", "name": "api", "resource": {"metadata": {"labels": {"env": "prod", "owner": owner}}}}

test_a_certificate_a_gate_selects_is_covered if {
	count(gate_coverage.deny) == 0 with input as certificate("web") with data.gitward.inventory.Gate as gates
}

test_a_certificate_no_gate_selects_is_denied if {
	count(gate_coverage.deny) == 1 with input as certificate("search") with data.gitward.inventory.Gate as gates
}

test_gates_for_other_kinds_do_not_count if {
	count(gate_coverage.deny) == 1 with input as certificate("web") with data.gitward.inventory.Gate as {"issuers": gates.issuers}
}
