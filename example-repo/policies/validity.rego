# Publicly trusted TLS certificates may be valid for at most 398 days (CA/Browser Forum
# Baseline Requirements); we hold every prod serverAuth certificate to the same limit.
package gitward.validity

import rego.v1

max_seconds := 398 * 86400

deny contains finding if {
	input.resource.metadata.labels.env == "prod"
	"serverAuth" in object.get(input.resource.spec, "usages", ["serverAuth"])
	input.computed.durationSeconds > max_seconds
	finding := {
		"msg": sprintf("%s is valid for %d days; prod serverAuth certificates may be valid for at most 398", [input.name, input.computed.durationSeconds / 86400]),
		"field": "spec.duration",
	}
}
