# Every prod certificate passes through a gate: no change to it is applied unchecked.
package gitward.gate_coverage

import rego.v1

labels := object.get(input.resource.metadata, "labels", {})

selects(selector) if {
	every key, wanted in selector {
		matches(object.get(labels, key, null), wanted)
	}
}

matches(value, wanted) if value == wanted

matches(value, wanted) if {
	is_array(wanted)
	value in wanted
}

covered if {
	some gate in data.gitward.inventory.Gate
	input.kind in gate.spec.appliesTo.kinds
	selects(object.get(gate.spec.appliesTo, "selector", {}))
}

deny contains finding if {
	labels.env == "prod"
	not covered
	finding := {
		"msg": sprintf("prod %s %s is not covered by any gate; its changes would apply unchecked", [input.kind, input.name]),
		"field": "metadata.labels",
	}
}
