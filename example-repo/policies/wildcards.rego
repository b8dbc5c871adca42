# The key of a wildcard certificate opens every host of its domain: prod certificates name
# each host instead.
package gitward.wildcards

import rego.v1

deny contains finding if {
	input.resource.metadata.labels.env == "prod"
	some i, name in object.get(input.resource.spec, "dnsNames", [])
	startswith(name, "*.")
	finding := {
		"msg": sprintf("%s is a wildcard; prod certificates name each host", [name]),
		"field": sprintf("spec.dnsNames[%d]", [i]),
	}
}
