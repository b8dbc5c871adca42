package gitward_checks.names

import rego.v1

deny contains msg if {
	some name in input.resource.spec.dnsNames
	contains(name, "evil")
	msg := sprintf("evil name %s", [name])
}
