# Every certificate and CA says who owns it and which environment it serves: findings reach
# the right team, and environment rules know where they apply.
package gitward.labels

import rego.v1

required := ["owner", "env"]

labels := object.get(input.resource.metadata, "labels", {})

deny contains finding if {
	some label in required
	not labels[label]
	finding := {
		"msg": sprintf("%s %s has no `%s` label", [input.kind, input.name, label]),
		"field": "metadata.labels",
	}
}
