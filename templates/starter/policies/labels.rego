# Every certificate says who owns it and where it runs.
package gitward.labels

import rego.v1

required := {"owner", "env"}

deny contains finding if {
	some label in required
	not input.resource.metadata.labels[label]
	finding := {
		"msg": sprintf("%s has no `%s` label", [input.name, label]),
		"field": "metadata.labels",
	}
}
