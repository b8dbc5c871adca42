# Publicly trusted TLS certificates may be valid for at most 398 days (CA/Browser Forum
# Baseline Requirements, 6.3.2); prod serverAuth certificates are held to the same limit.
package gitward.validity

import rego.v1

max_days := 398

usages := object.get(input.resource.spec, "usages", ["serverAuth"])

deny contains finding if {
	input.resource.metadata.labels.env == "prod"
	"serverAuth" in usages
	days := input.computed.durationSeconds / 86400
	days > max_days
	finding := {
		"msg": sprintf("%s is valid for %d days; prod serverAuth certificates may be valid for at most %d", [input.name, days, max_days]),
		"field": "spec.duration",
	}
}
