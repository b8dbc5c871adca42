# Publicly trusted TLS certificates may be valid for at most 398 days (CA/Browser Forum
# Baseline Requirements, 6.3.2); prod serverAuth certificates are held to the same limit.
package gitward.validity

import rego.v1

max_days := 398

usages := object.get(input.resource.spec, "usages", ["serverAuth"])

deny contains finding if {
	input.resource.metadata.labels.env == "prod"
	"serverAuth" in usages
	input.computed.durationSeconds > max_days * 86400
	finding := {
		"msg": sprintf("%s is valid for %s; prod serverAuth certificates may be valid for at most %d days", [input.name, input.resource.spec.duration, max_days]),
		"field": "spec.duration",
	}
}
