# Certificates name only hosts in the domains their environment owns (data/domains.yaml).
package gitward.domains

import rego.v1

env := object.get(input.resource.metadata, ["labels", "env"], "")

allowed := data.domains.allowed[env]

within(name, domain) if {
	host := trim_prefix(name, "*.")
	host == domain
}

within(name, domain) if {
	host := trim_prefix(name, "*.")
	endswith(host, concat("", [".", domain]))
}

deny contains finding if {
	some i, name in object.get(input.resource.spec, "dnsNames", [])
	not any_within(name)
	finding := {
		"msg": sprintf("%s is outside the domains allowed in %s: %s", [name, env, concat(", ", allowed)]),
		"field": sprintf("spec.dnsNames[%d]", [i]),
	}
}

deny contains finding if {
	not data.domains.allowed[env]
	finding := {
		"msg": sprintf("no domains are allowed for environment `%s`; add it to policies/data/domains.yaml", [env]),
		"field": "metadata.labels.env",
	}
}

any_within(name) if {
	some domain in allowed
	within(name, domain)
}
