# A certificate renewed in its last tenth leaves little time to notice a failed renewal:
# renewBefore should be at least 10 % of the duration.
package gitward.renewal

import rego.v1

deny contains finding if {
	input.computed.renewBeforeSeconds * 10 < input.computed.durationSeconds
	finding := {
		"msg": sprintf("%s renews %s before expiry, less than 10 %% of its %s validity", [input.name, input.resource.spec.renewBefore, input.resource.spec.duration]),
		"field": "spec.renewBefore",
	}
}
